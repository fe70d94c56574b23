"""The one settings module. Every deployment difference comes from environment variables.

Production is the default (DEBUG off, secure cookies, HSTS); `./dev.py` sets DEBUG=true
for local runs. Required in production: SECRET_KEY, DATABASE_URL, REDIS_URL, ALLOWED_HOSTS.
"""

from datetime import timedelta
from pathlib import Path
from urllib.parse import urlsplit

import environ
from django.core.exceptions import ImproperlyConfigured

BASE_DIR = Path(__file__).resolve().parent.parent

env = environ.Env()

# ---------------------------------------------------------------------------
# Core
# ---------------------------------------------------------------------------
DEBUG = env.bool("DEBUG", default=False)
_DEV_SECRET = "dev-only-insecure-key-change-me-0123456789-abcdefghijklmnopqrstuvwxyz"  # noqa: S105 - DEBUG only
SECRET_KEY = env.str("SECRET_KEY", default=_DEV_SECRET if DEBUG else "")
if not SECRET_KEY:
    raise ImproperlyConfigured("SECRET_KEY must be set when DEBUG is off.")
ALLOWED_HOSTS = env.list(
    "ALLOWED_HOSTS", default=["localhost", "127.0.0.1", "[::1]", "testserver"] if DEBUG else []
)
CSRF_TRUSTED_ORIGINS = env.list("CSRF_TRUSTED_ORIGINS", default=[])
# With DEBUG on, Django's debug 404/500 pages (URL list, traceback, settings) instead of
# the product's own. `./dev.py run` turns them off so a demo looks like the product.
TECHNICAL_ERROR_PAGES = env.bool("TECHNICAL_ERROR_PAGES", default=DEBUG)
# the least time a 404 takes (0 turns it off; off by default in development and tests)
NOT_FOUND_FLOOR_MS = env.int("NOT_FOUND_FLOOR_MS", default=0 if DEBUG else 40)
# The address people open CareTeam at: emails link to it (they carry no patient data,
# only a link back). Required in production; a bare host or path is refused.
SITE_URL = env.str("SITE_URL", default="http://localhost:8000" if DEBUG else "").rstrip("/")
if not SITE_URL:
    raise ImproperlyConfigured("SITE_URL must be set when DEBUG is off (e.g. https://careteam.example.org).")
if urlsplit(SITE_URL).scheme not in ("http", "https") or not urlsplit(SITE_URL).netloc:
    raise ImproperlyConfigured(f"SITE_URL must be an absolute http(s) address, not {SITE_URL!r}.")

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "whitenoise.runserver_nostatic",
    "django.contrib.staticfiles",
    "django.contrib.postgres",
    "rest_framework",
    "knox",
    "django_filters",
    "drf_spectacular",
    "drf_spectacular_sidecar",
    "guardian",
    "axes",
    "django_otp",
    "django_otp.plugins.otp_totp",
    "django_otp.plugins.otp_static",
    "django_htmx",
    "csp",
    "simple_history",
    "careteam.apps.CareTeamConfig",
    "patients.apps.PatientsConfig",
    "careplans.apps.CareplansConfig",
    "referrals.apps.ReferralsConfig",
    "transitions.apps.TransitionsConfig",
    "visits.apps.VisitsConfig",
    "portal.apps.PortalConfig",
    "workspace.apps.WorkspaceConfig",
]

MIDDLEWARE = [
    # an id per request, in X-Request-ID, every log line, audit events and tasks
    "careteam.middleware.RequestIdMiddleware",
    # safe requests of people who have not just written read from a replica, if any
    "careteam.replicas.ReplicaReadsMiddleware",
    # every 404 takes at least NOT_FOUND_FLOOR_MS: hidden and missing ids time alike
    "careteam.middleware.NotFoundFloorMiddleware",
    # /healthz and /readyz answer here, before the host check, TLS redirect and session
    "careteam.middleware.ProbeMiddleware",
    # request latency by URL name for /metrics (careteam/metrics.py)
    "careteam.middleware.RequestMetricsMiddleware",
    "django.middleware.security.SecurityMiddleware",
    "csp.middleware.CSPMiddleware",
    # a NUL in the query string answers 400 before any view or database sees it
    "careteam.middleware.HostileInputMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django_otp.middleware.OTPMiddleware",
    # a session that skipped a required second factor is not signed in
    "careteam.middleware.TwoFactorMiddleware",
    # patients, caregivers and partners reach only their own pages (404 elsewhere)
    "careteam.middleware.AccountKindMiddleware",
    # the product's 404/500 pages also while DEBUG is on, unless TECHNICAL_ERROR_PAGES
    "careteam.middleware.ProductErrorPagesMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    # before HtmxMiddleware: a history restore is answered as a full page
    "careteam.middleware.HtmxHistoryMiddleware",
    "django_htmx.middleware.HtmxMiddleware",
    "simple_history.middleware.HistoryRequestMiddleware",
    "careteam.middleware.IdleSessionTimeoutMiddleware",
    # audits denials (403/404) and unaudited reads of every URL that names patient data
    "careteam.middleware.PatientAuditMiddleware",
    # AxesMiddleware must be last: it turns lockouts into responses.
    "axes.middleware.AxesMiddleware",
]

# Paths each non-staff kind of account may reach (careteam.middleware.AccountKindMiddleware);
# everything else answers 404 to them.
ACCOUNT_COMMON_PATHS: tuple[str, ...] = ("/accounts/", "/static/", "/i18n/", "/api/v1/auth/token/")
# Portal accounts also reach the API's patient list and FHIR $everything with their own
# token; those views answer them only for their own (or consented) patients, the shared
# subset of the plan only, and refuse every write (portal.access, portal.selectors).
PORTAL_API_PATHS = ("/api/v1/patients/", "/fhir/Patient/")
ACCOUNT_KIND_PATHS: dict[str, tuple[str, ...]] = {
    "patient": ("/portal/", *PORTAL_API_PATHS),
    "caregiver": ("/portal/", *PORTAL_API_PATHS),
    # partners: their pages and the referrals API (the view answers only their own)
    "partner": ("/partner/", "/api/v1/referrals/"),
}
# where "/" sends a signed-in account of each non-staff kind
ACCOUNT_KIND_HOME: dict[str, str] = {"patient": "/portal/", "caregiver": "/portal/", "partner": "/partner/"}
# the portal: how long an invitation link works; when an unanswered patient message is
# reminded to the case manager (once); the languages the portal is translated into
PORTAL_INVITATION_HOURS = env.int("PORTAL_INVITATION_HOURS", default=72)
PORTAL_MESSAGE_REMINDER_HOURS = env.int("PORTAL_MESSAGE_REMINDER_HOURS", default=24)
PORTAL_LANGUAGES = (("en", "English"), ("es", "Español"))

ROOT_URLCONF = "config.urls"
WSGI_APPLICATION = "config.wsgi.application"
AUTH_USER_MODEL = "careteam.User"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [BASE_DIR / "templates"],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
                "careteam.context_processors.unread_notifications",
            ],
        },
    },
]

# ---------------------------------------------------------------------------
# Database: PostgreSQL only (constraints, SKIP LOCKED, triggers, full-text search)
# ---------------------------------------------------------------------------
DATABASES = {"default": env.db("DATABASE_URL", default="postgres://postgres@127.0.0.1:5432/careteam")}
if DATABASES["default"]["ENGINE"] != "django.db.backends.postgresql":
    raise ImproperlyConfigured("CareTeam runs on PostgreSQL only; DATABASE_URL must be postgres://")
DATABASES["default"]["CONN_MAX_AGE"] = env.int("CONN_MAX_AGE", default=60)
DATABASES["default"]["CONN_HEALTH_CHECKS"] = True
# Behind PgBouncer in transaction mode a server-side cursor (QuerySet.iterator() outside a
# transaction) would outlive the transaction that declared it: set this to true there.
DATABASES["default"]["DISABLE_SERVER_SIDE_CURSORS"] = env.bool("DISABLE_SERVER_SIDE_CURSORS", default=False)
DATABASES["default"]["ATOMIC_REQUESTS"] = False
# Hot standbys for reads (careteam/replicas.py): comma-separated URLs. Safe requests of
# people who have not written in the last READ_YOUR_WRITES_SECONDS read from the first
# replica that answers and lags at most REPLICA_MAX_LAG_SECONDS; everything else, the
# sweep and every task use the primary.
for _n, _url in enumerate(u for u in env.list("DATABASE_REPLICA_URLS", default=[]) if u):
    DATABASES[f"replica_{_n}"] = {
        **env.db_url_config(_url),
        "CONN_MAX_AGE": DATABASES["default"]["CONN_MAX_AGE"],
        "CONN_HEALTH_CHECKS": True,
        "DISABLE_SERVER_SIDE_CURSORS": DATABASES["default"]["DISABLE_SERVER_SIDE_CURSORS"],
        "TEST": {"MIRROR": "default"},
    }
DATABASE_ROUTERS = ["careteam.replicas.ReplicaRouter"]
REPLICA_MAX_LAG_SECONDS = env.float("REPLICA_MAX_LAG_SECONDS", default=5.0)
REPLICA_CHECK_SECONDS = env.float("REPLICA_CHECK_SECONDS", default=2.0)
REPLICA_DOWN_SECONDS = env.float("REPLICA_DOWN_SECONDS", default=10.0)
READ_YOUR_WRITES_SECONDS = env.int("READ_YOUR_WRITES_SECONDS", default=10)
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

# The web tier keeps nothing in process memory that another process needs: sessions,
# lockouts and reminders live in PostgreSQL, so more gunicorn processes just work.
CACHES = {"default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"}}

# ---------------------------------------------------------------------------
# Authentication and session hardening
# ---------------------------------------------------------------------------
AUTHENTICATION_BACKENDS = [
    "axes.backends.AxesStandaloneBackend",
    "django.contrib.auth.backends.ModelBackend",
    "guardian.backends.ObjectPermissionBackend",
]
AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {
        "NAME": "django.contrib.auth.password_validation.MinimumLengthValidator",
        "OPTIONS": {"min_length": 12},
    },
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]
LOGIN_URL = "login"
LOGIN_REDIRECT_URL = "home"  # clinicians on to My work (careteam.views.home)
LOGOUT_REDIRECT_URL = "login"

# django-axes: lock the (username, IP) pair, never the username alone, so nobody can
# lock a clinician out from elsewhere; the lock lifts by itself after the cool-off.
AXES_FAILURE_LIMIT = env.int("AXES_FAILURE_LIMIT", default=5)
AXES_COOLOFF_TIME = timedelta(minutes=env.int("AXES_COOLOFF_MINUTES", default=15))
AXES_LOCKOUT_PARAMETERS = [["username", "ip_address"]]
AXES_RESET_ON_SUCCESS = True
AXES_IPWARE_PROXY_COUNT = env.int("AXES_PROXY_COUNT", default=0)
AXES_ENABLED = env.bool("AXES_ENABLED", default=True)
AXES_LOCKOUT_TEMPLATE = "registration/lockout.html"

# Two-factor sign-in (careteam/twofactor.py): required for staff roles (clinicians and
# administrators) when on; production default on, `./dev.py run` (DEBUG) and tests off.
REQUIRE_2FA = env.bool("REQUIRE_2FA", default=not DEBUG)
OTP_TOTP_ISSUER = env.str("OTP_TOTP_ISSUER", default="CareTeam")
# each wrong code doubles the wait before the next try on that device (1, 2, 4 ... s)
OTP_TOTP_THROTTLE_FACTOR = 1
OTP_STATIC_THROTTLE_FACTOR = 1
# the admin never shows a device's secret (key, QR code): an administrator who could read
# it would hold that person's second factor. Resetting a lost device is deleting it.
OTP_ADMIN_HIDE_SENSITIVE_DATA = True

SESSION_COOKIE_AGE = env.int("SESSION_COOKIE_AGE", default=12 * 3600)
SESSION_IDLE_TIMEOUT = env.int("SESSION_IDLE_TIMEOUT", default=15 * 60)  # seconds
SESSION_COOKIE_HTTPONLY = True
SESSION_COOKIE_SAMESITE = "Lax"

SECURE_SSL_REDIRECT = env.bool("SECURE_SSL_REDIRECT", default=not DEBUG)
SESSION_COOKIE_SECURE = env.bool("SESSION_COOKIE_SECURE", default=not DEBUG)
CSRF_COOKIE_SECURE = env.bool("CSRF_COOKIE_SECURE", default=not DEBUG)
SECURE_HSTS_SECONDS = env.int("SECURE_HSTS_SECONDS", default=0 if DEBUG else 31536000)
SECURE_HSTS_INCLUDE_SUBDOMAINS = not DEBUG
SECURE_HSTS_PRELOAD = not DEBUG
SECURE_CONTENT_TYPE_NOSNIFF = True
SECURE_REFERRER_POLICY = "same-origin"
SECURE_CROSS_ORIGIN_OPENER_POLICY = "same-origin"
X_FRAME_OPTIONS = "DENY"
# The CSRF cookie is not readable by scripts: pages carry the token (forms' hidden field;
# htmx sends it from <body hx-headers>; Swagger UI from its page).
CSRF_COOKIE_HTTPONLY = True

# Content-Security-Policy (django-csp) on every response: scripts and styles only from
# our own static files, no inline script, style or event handler, no eval, no framing,
# forms post only to us. Catalog links (HSDS) are checked at entry (careteam/validators.py);
# this is the second line.
CONTENT_SECURITY_POLICY = {
    "DIRECTIVES": {
        "default-src": ["'self'"],
        "script-src": ["'self'"],
        "style-src": ["'self'"],
        "img-src": ["'self'", "data:"],
        "font-src": ["'self'"],
        "connect-src": ["'self'"],
        "object-src": ["'none'"],
        "base-uri": ["'none'"],
        "frame-ancestors": ["'none'"],
        "form-action": ["'self'"],
    }
}
if env.bool("BEHIND_TLS_PROXY", default=False):
    SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")

# ---------------------------------------------------------------------------
# I18N / static
# ---------------------------------------------------------------------------
LANGUAGE_CODE = "en-us"
TIME_ZONE = env.str("TIME_ZONE", default="UTC")
# "2 Dec 2026, 06:32" on every page (careteam/formats/)
FORMAT_MODULE_PATH = ["careteam.formats"]
USE_I18N = True
USE_TZ = True

STATIC_URL = "static/"
STATIC_ROOT = BASE_DIR / "staticfiles"
STATICFILES_DIRS = [BASE_DIR / "static"]
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {
        "BACKEND": "whitenoise.storage.CompressedManifestStaticFilesStorage"
        if not DEBUG
        else "django.contrib.staticfiles.storage.StaticFilesStorage"
    },
}

# ---------------------------------------------------------------------------
# Email
# ---------------------------------------------------------------------------
EMAIL_CONFIG = env.email_url("EMAIL_URL", default="consolemail://")
vars().update(EMAIL_CONFIG)
DEFAULT_FROM_EMAIL = env.str("DEFAULT_FROM_EMAIL", default="CareTeam <careteam@localhost>")
# The right-hand side of each notification email's Message-ID
# (<notification-{id}.{due moment}@domain>): the same notification always carries the same
# Message-ID, so a mail client collapses a repeat. Defaults to SITE_URL's host name.
EMAIL_MESSAGE_ID_DOMAIN = env.str(
    "EMAIL_MESSAGE_ID_DOMAIN", default=urlsplit(SITE_URL).hostname or "localhost"
)

# ---------------------------------------------------------------------------
# Celery (Redis broker). Reminders are database rows claimed by a periodic sweep,
# never long ETAs: Redis would redeliver unacknowledged ETA tasks.
# ---------------------------------------------------------------------------
REDIS_URL = env.str("REDIS_URL", default="redis://127.0.0.1:6379/0")
CELERY_BROKER_URL = REDIS_URL
# No result backend: tasks report through database rows, and a Redis result backend made
# every enqueue wait in its reconnect loop while Redis was down. Set one only to read
# task results (the worker tests' ping does).
CELERY_RESULT_BACKEND = env.str("CELERY_RESULT_BACKEND", default=None)
CELERY_TASK_IGNORE_RESULT = True
CELERY_TASK_ACKS_LATE = True
CELERY_TASK_REJECT_ON_WORKER_LOST = True
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
CELERY_TASK_SERIALIZER = "json"
CELERY_ACCEPT_CONTENT = ["json"]
CELERY_TIMEZONE = TIME_ZONE
CELERY_BROKER_CONNECTION_RETRY_ON_STARTUP = True
CELERY_TASK_DEFAULT_QUEUE = env.str("CELERY_TASK_DEFAULT_QUEUE", default="celery")
# A message a dead worker had taken is redelivered after this many seconds (keep it above
# the longest task; the worker-kill test lowers it).
# Short socket timeouts: a Redis that accepts connections but never answers (hung, SIGSTOP)
# fails a publish within seconds instead of hanging it.
CELERY_BROKER_TRANSPORT_OPTIONS = {
    "visibility_timeout": env.int("CELERY_VISIBILITY_TIMEOUT", default=3600),
    "socket_timeout": env.float("CELERY_BROKER_SOCKET_TIMEOUT", default=2.0),
    "socket_connect_timeout": env.float("CELERY_BROKER_SOCKET_TIMEOUT", default=2.0),
}
CELERY_BROKER_CONNECTION_TIMEOUT = env.float("CELERY_BROKER_SOCKET_TIMEOUT", default=2.0)
CELERY_RESULT_EXPIRES = 3600
CELERY_BEAT_SCHEDULE: dict = {
    "memberships-sync": {"task": "careteam.memberships_sync", "schedule": 15 * 60},
    # Every minute; run exactly one beat process. Each reminder is a unique database row,
    # so a second beat or an overlapping sweep still sends nothing twice.
    "reminders-sweep": {"task": "careteam.reminders_sweep", "schedule": 60},
    # the audit trail's partitions of the coming months (careteam/audit_partitions.py)
    "audit-partitions": {"task": "careteam.audit_partitions_ensure", "schedule": 6 * 60 * 60},
}
# The audit trail is partitioned by month: partitions are made this many months ahead, and
# `manage.py audit_archive` moves months older than AUDIT_RETENTION_MONTHS to gzipped CSV
# files in AUDIT_ARCHIVE_DIR (HIPAA asks for six years of audit records).
AUDIT_PARTITIONS_AHEAD = env.int("AUDIT_PARTITIONS_AHEAD", default=3)
AUDIT_RETENTION_MONTHS = env.int("AUDIT_RETENTION_MONTHS", default=72)
AUDIT_ARCHIVE_DIR = env.str("AUDIT_ARCHIVE_DIR", default=str(BASE_DIR / ".data" / "audit-archive"))

# ---------------------------------------------------------------------------
# Care-team rules
# ---------------------------------------------------------------------------
# how long emergency access lasts, and the requests (granted or unknown MRN) one user may
# make per hour. The names these had before (BREAK_GLASS_HOURS,
# BREAK_GLASS_ATTEMPTS_PER_HOUR) are still read, so a deployment set up earlier keeps them.
EMERGENCY_ACCESS_HOURS = env.float(
    "EMERGENCY_ACCESS_HOURS", default=env.float("BREAK_GLASS_HOURS", default=4.0)
)
EMERGENCY_ACCESS_ATTEMPTS_PER_HOUR = env.int(
    "EMERGENCY_ACCESS_ATTEMPTS_PER_HOUR", default=env.int("BREAK_GLASS_ATTEMPTS_PER_HOUR", default=10)
)
# Reminders (careteam/reminders.py): remind the receiver of an unacknowledged handoff after
# this long, and again this long before its due time; escalate to the case manager when overdue.
HANDOFF_ACK_REMINDER_MINUTES = env.int("HANDOFF_ACK_REMINDER_MINUTES", default=30)
HANDOFF_DUE_SOON_MINUTES = env.int("HANDOFF_DUE_SOON_MINUTES", default=60)
# An email still unsent this long after its notification was created is enqueued again
# (the broker may have lost it); after the retry window only the in-app notification remains.
NOTIFICATION_EMAIL_GRACE_SECONDS = env.int("NOTIFICATION_EMAIL_GRACE_SECONDS", default=300)
NOTIFICATION_EMAIL_RETRY_HOURS = env.int("NOTIFICATION_EMAIL_RETRY_HOURS", default=24)
# Visits and service authorisations (visits/): the clinician is reminded this long before
# a booked visit; the case manager is warned this many days before an authorisation ends,
# when this many units (or fewer) are left, and when a request has had no answer this long.
VISIT_REMINDER_HOURS = env.int("VISIT_REMINDER_HOURS", default=24)
AUTHORISATION_EXPIRY_WARNING_DAYS = env.int("AUTHORISATION_EXPIRY_WARNING_DAYS", default=14)
AUTHORISATION_UNITS_WARNING = env.int("AUTHORISATION_UNITS_WARNING", default=2)
AUTHORISATION_REQUEST_WARNING_DAYS = env.int("AUTHORISATION_REQUEST_WARNING_DAYS", default=7)
# Text messages to patients (once the portal records their opt-in): "console" writes them
# to the log, "file" to SMS_FILE_PATH (one JSON line each); a provider's backend is a
# dotted path to a class with send(to, body).
# Huddles (careteam/huddles.py): an invited member who has not answered is reminded once,
# this long before the huddle's deadline (or at once when the deadline is nearer).
HUDDLE_REMINDER_MINUTES = env.int("HUDDLE_REMINDER_MINUTES", default=120)
if HUDDLE_REMINDER_MINUTES < 1:
    raise ImproperlyConfigured("HUDDLE_REMINDER_MINUTES must be at least 1.")
SMS_BACKEND = env.str("SMS_BACKEND", default="console")
SMS_FILE_PATH = env.str("SMS_FILE_PATH", default=str(BASE_DIR / ".data" / "sms.log"))
for _name in (
    "VISIT_REMINDER_HOURS",
    "AUTHORISATION_EXPIRY_WARNING_DAYS",
    "AUTHORISATION_REQUEST_WARNING_DAYS",
):
    if globals()[_name] < 1:
        raise ImproperlyConfigured(f"{_name} must be at least 1.")

# API tokens (django-rest-knox, careteam/api/auth.py): one per signed-in client, stored as
# a digest, lapsing after API_TOKEN_IDLE_MINUTES without use and at the latest
# API_TOKEN_MAX_HOURS after they were issued.
REST_KNOX = {
    "TOKEN_TTL": timedelta(minutes=env.int("API_TOKEN_IDLE_MINUTES", default=60)),
    "AUTO_REFRESH": True,
    "AUTO_REFRESH_MAX_TTL": timedelta(hours=env.int("API_TOKEN_MAX_HOURS", default=12)),
    # a token's expiry is rewritten at most once a minute, not on every request
    "MIN_REFRESH_INTERVAL": 60,
    "AUTH_HEADER_PREFIX": "Token",
}
# signing in from one client more keeps only this many newest tokens of the account
API_TOKENS_PER_USER = env.int("API_TOKENS_PER_USER", default=10)

# Hostile input: an HSDS upload (a zip is counted as it expands), FHIR $import bundles,
# FHIR search pages
# Partner organisations (docs/partners.md): the invitation link's life, the signed
# referral link's, the reminder to the referrer after the service's own response days,
# and the "not updated for N days" counts of the partner inbox.
PARTNER_INVITE_HOURS = env.int("PARTNER_INVITE_HOURS", default=72)
REFERRAL_LINK_DAYS = env.int("REFERRAL_LINK_DAYS", default=14)
PARTNER_REFERRER_REMINDER_DAYS = env.int("PARTNER_REFERRER_REMINDER_DAYS", default=2)
PARTNER_NOT_UPDATED_DAYS: tuple[int, ...] = tuple(
    env.list("PARTNER_NOT_UPDATED_DAYS", cast=int, default=[3, 7, 14])
)
HSDS_IMPORT_MAX_BYTES = env.int("HSDS_IMPORT_MAX_BYTES", default=50_000_000)
HSDS_IMPORT_MAX_FILES = env.int("HSDS_IMPORT_MAX_FILES", default=50)

# The catalog as an HSDS 3.0 read API under /hsds/ (docs/hsds.md): "signed-in" (a session
# or an API token, the default) or "public" (anyone; the catalog holds no patient data).
HSDS_API_ACCESS = env.str("HSDS_API_ACCESS", default="signed-in")
if HSDS_API_ACCESS not in ("signed-in", "public"):
    raise ImproperlyConfigured(f"HSDS_API_ACCESS is 'signed-in' or 'public', not {HSDS_API_ACCESS!r}.")
HSDS_API_PAGE_SIZE = env.int("HSDS_API_PAGE_SIZE", default=50)
HSDS_API_MAX_PER_PAGE = env.int("HSDS_API_MAX_PER_PAGE", default=200)
if not 1 <= HSDS_API_PAGE_SIZE <= HSDS_API_MAX_PER_PAGE:
    raise ImproperlyConfigured("HSDS_API_PAGE_SIZE must be from 1 to HSDS_API_MAX_PER_PAGE.")
# A listing not assured (checked by a catalog administrator) for this many months is
# listed as stale on the catalog review page.
CATALOG_STALE_MONTHS = env.int("CATALOG_STALE_MONTHS", default=12)
if CATALOG_STALE_MONTHS < 1:
    raise ImproperlyConfigured("CATALOG_STALE_MONTHS must be at least 1.")
FHIR_IMPORT_MAX_ENTRIES = env.int("FHIR_IMPORT_MAX_ENTRIES", default=500)
FHIR_SEARCH_MAX_COUNT = env.int("FHIR_SEARCH_MAX_COUNT", default=200)

# ---------------------------------------------------------------------------
# REST framework / OpenAPI
# ---------------------------------------------------------------------------
REST_FRAMEWORK = {
    "DEFAULT_AUTHENTICATION_CLASSES": [
        "rest_framework.authentication.SessionAuthentication",
        "careteam.api.auth.ApiTokenAuthentication",
    ],
    "DEFAULT_PERMISSION_CLASSES": ["rest_framework.permissions.IsAuthenticated"],
    "DEFAULT_PARSER_CLASSES": ["careteam.api.parsers.SafeJSONParser"],
    "DEFAULT_FILTER_BACKENDS": [
        "django_filters.rest_framework.DjangoFilterBackend",
        "rest_framework.filters.OrderingFilter",
    ],
    "DEFAULT_PAGINATION_CLASS": "rest_framework.pagination.PageNumberPagination",
    "PAGE_SIZE": 50,
    "DEFAULT_SCHEMA_CLASS": "drf_spectacular.openapi.AutoSchema",
}
SPECTACULAR_SETTINGS = {
    "TITLE": "CareTeam API",
    "DESCRIPTION": "Care plans, care teams, handoffs and closed-loop referrals.",
    "VERSION": "1.0.0",
    "SERVE_INCLUDE_SCHEMA": False,
    # Swagger UI from the installed sidecar package: offline deployments have no CDN.
    "SWAGGER_UI_DIST": "SIDECAR",
    "SWAGGER_UI_FAVICON_HREF": "SIDECAR",
    "REDOC_DIST": "SIDECAR",
    # Error answers documented on every operation (careteam/api/schema.py), separate
    # request and response components, and one name per status machine.
    "POSTPROCESSING_HOOKS": [
        "drf_spectacular.hooks.postprocess_schema_enums",
        "careteam.api.schema.add_error_responses",
    ],
    "COMPONENT_SPLIT_REQUEST": True,
    # PATCH bodies are the update serializers as declared (their required fields stay required)
    "COMPONENT_SPLIT_PATCH": False,
    "ENUM_NAME_OVERRIDES": {
        "PatientStatusEnum": "patients.models.PatientStatus",
        "CarePlanStatusEnum": "careplans.models.CarePlanStatus",
        "GoalLifecycleEnum": "careplans.models.GoalLifecycle",
        "NeedStatusEnum": "careplans.models.NeedStatus",
        "ActivityStatusEnum": "careplans.models.ActivityStatus",
        "MembershipStatusEnum": "careteam.models.MembershipStatus",
        "HandoffStatusEnum": "careteam.models.HandoffStatus",
        "HandoffKindEnum": "careteam.models.HandoffKind",
        "HandoffPriorityEnum": "careteam.models.Priority",
        "NotificationKindEnum": "careteam.models.NotificationKind",
        "AuditActionEnum": "careteam.models.AuditAction",
        "AuditOutcomeEnum": "careteam.models.AuditOutcome",
        "ReferralStatusEnum": "referrals.models.ReferralStatus",
        "ReferralOutcomeEnum": "referrals.models.ReferralOutcome",
        "ServiceStatusEnum": "referrals.models.ServiceStatus",
        "GoalPriorityEnum": "careplans.models.GoalPriority",
        "NoteKindEnum": "careplans.models.NoteKind",
        "NoteStatusEnum": "careplans.models.NoteStatus",
        "ReferralPriorityEnum": [("routine", "Routine"), ("urgent", "Urgent"), ("asap", "ASAP")],
        "VisitStatusEnum": "visits.models.VisitStatus",
        "HuddleStatusEnum": "careteam.models.HuddleStatus",
        "AuthorisationStatusEnum": "visits.models.AuthorisationStatus",
    },
}

# ---------------------------------------------------------------------------
# Operating (docs/operations.md): /metrics answers a scraper sending
# `Authorization: Bearer <METRICS_TOKEN>` and signed-in superusers; everyone else 404.
# ---------------------------------------------------------------------------
METRICS_TOKEN = env.str("METRICS_TOKEN", default="")
if METRICS_TOKEN and len(METRICS_TOKEN) < 16:
    raise ImproperlyConfigured("METRICS_TOKEN must be at least 16 characters (or unset).")

# ---------------------------------------------------------------------------
# Logging: to stderr, so any process manager collects it; web, worker and beat alike
# (config/celery.py keeps Celery from replacing this). LOG_FORMAT=json (the default
# with DEBUG off) writes one JSON object per line; every line carries the request id
# (careteam/requestid.py). docs/operations.md describes the fields.
# ---------------------------------------------------------------------------
LOG_FORMAT = env.str("LOG_FORMAT", default="text" if DEBUG else "json")
if LOG_FORMAT not in ("json", "text"):
    raise ImproperlyConfigured(f"LOG_FORMAT must be json or text, not {LOG_FORMAT!r}.")
LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "filters": {
        "client_errors_short": {"()": "careteam.logfilters.ClientErrorWithoutTraceback"},
        "request_id": {"()": "careteam.logfilters.RequestIdFilter"},
    },
    "formatters": {
        "json": {"()": "careteam.logfilters.JsonFormatter"},
        "text": {"format": "%(asctime)s %(levelname)s %(name)s [%(request_id)s] %(message)s"},
    },
    "handlers": {
        "console": {
            "class": "logging.StreamHandler",
            "filters": ["client_errors_short", "request_id"],
            "formatter": LOG_FORMAT,
        },
    },
    "root": {"handlers": ["console"], "level": env.str("LOG_LEVEL", default="INFO")},
    "loggers": {"django.db.backends": {"level": "INFO"}},
}

# django-guardian: no anonymous user; nobody anonymous ever sees patient data.
ANONYMOUS_USER_NAME = None
GUARDIAN_RAISE_403 = False
