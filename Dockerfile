# CareTeam application image: one image for the web (gunicorn), worker and beat services.
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PYTHONPATH=/app \
    DJANGO_SETTINGS_MODULE=config.settings

WORKDIR /app

RUN groupadd --system --gid 10001 careteam \
    && useradd --system --uid 10001 --gid careteam --home-dir /app --no-create-home \
       --shell /usr/sbin/nologin careteam

# Dependencies first, so this layer is rebuilt only when pyproject.toml changes.
# (`pip install .` installs the pinned dependencies; the app itself runs from /app.)
COPY pyproject.toml README.md ./
RUN pip install .

COPY . .
RUN mkdir -p /app/staticfiles && chown careteam:careteam /app/staticfiles

USER careteam

# Static files are collected at build time; the key is a placeholder that only lets the
# settings load for collectstatic and is never used at run time.
RUN DEBUG=false SECRET_KEY=collectstatic-build-only-placeholder \
    python manage.py collectstatic --noinput

EXPOSE 8000
CMD ["gunicorn", "config.wsgi:application", "--bind", "0.0.0.0:8000", "--workers", "3", \
     "--logger-class", "config.gunicorn_logging.Logger", "--access-logfile", "-"]
