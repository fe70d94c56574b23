#!/usr/bin/env python
"""Django's command-line utility for administrative tasks."""

import os
import sys


def main() -> None:
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")
    # A checkout with neither DEBUG nor SECRET_KEY in the environment is a developer's:
    # management commands run with the development settings there. A deployment sets
    # SECRET_KEY (or DEBUG=false) and keeps the production defaults; the web server
    # (config/wsgi.py) and the Celery app never take this path.
    if "DEBUG" not in os.environ and "SECRET_KEY" not in os.environ:
        os.environ["DEBUG"] = "true"
    from django.core.management import execute_from_command_line

    execute_from_command_line(sys.argv)


if __name__ == "__main__":
    main()
