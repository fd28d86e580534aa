"""Settings for the API key attestation portal.

Every value comes from the environment with a safe local default: SQLite, DEBUG on, Celery tasks
run in-process. Set ``DJANGO_ENV=production`` (or ``DEBUG=false``) for the production mode, which
requires ``SECRET_KEY``, ``KEY_FINGERPRINT_PEPPER`` and ``DATABASE_URL``.
"""

import datetime
import os
from pathlib import Path

import dj_database_url
from django.core.checks.security.base import (
    SECRET_KEY_INSECURE_PREFIX,
    SECRET_KEY_MIN_LENGTH,
    SECRET_KEY_MIN_UNIQUE_CHARACTERS,
)
from django.core.exceptions import ImproperlyConfigured

BASE_DIR = Path(__file__).resolve().parent.parent


def env(name: str, default: str = "") -> str:
    return os.environ.get(name, default)


def env_bool(name: str, default: bool) -> bool:
    value = os.environ.get(name)
    if value is None or value == "":
        return default
    return value.strip().lower() in {"1", "true", "yes", "on"}


def env_int(name: str, default: int) -> int:
    value = os.environ.get(name)
    return int(value) if value else default


def env_list(name: str, default: str = "") -> list[str]:
    return [item.strip() for item in env(name, default).split(",") if item.strip()]


def user_data_dir() -> Path:
    """This user's application data (the XDG base directory): outside the repository and the database."""
    return Path(env("XDG_DATA_HOME") or Path.home() / ".local" / "share") / "keys-portal"


PRODUCTION = env("DJANGO_ENV", "local").lower() == "production"
DEBUG = env_bool("DEBUG", not PRODUCTION)


def required(name: str, local_default: str) -> str:
    value = env(name)
    if value:
        return value
    if PRODUCTION:
        raise ImproperlyConfigured(f"{name} must be set in production mode.")
    return local_default


LOCAL_SECRET_KEY = "local-only-insecure-secret-key-change-me-in-production-0123456789"
SECRET_KEY = required("SECRET_KEY", LOCAL_SECRET_KEY)


def weak_secret_key(value: str) -> bool:
    """What Django's deploy check warns about (short, few distinct characters, a generated development key),
    or the local default."""
    return (len(value) < SECRET_KEY_MIN_LENGTH or len(set(value)) < SECRET_KEY_MIN_UNIQUE_CHARACTERS
            or value.startswith(SECRET_KEY_INSECURE_PREFIX) or value == LOCAL_SECRET_KEY)


# Production refuses to start rather than warn: debug pages show settings and code, and a weak key lets
# anyone forge sessions, password-reset links and signed values.
if PRODUCTION and DEBUG:
    raise ImproperlyConfigured("DEBUG must be off in production mode: unset DEBUG or set DEBUG=false.")
if PRODUCTION and weak_secret_key(SECRET_KEY):
    raise ImproperlyConfigured(
        f"SECRET_KEY is too weak for production mode: give at least {SECRET_KEY_MIN_LENGTH} random characters, "
        "e.g. python -c 'import secrets; print(secrets.token_urlsafe(64))'."
    )
ALLOWED_HOSTS = env_list("ALLOWED_HOSTS", "" if PRODUCTION else "127.0.0.1,localhost,[::1],testserver")
CSRF_TRUSTED_ORIGINS = env_list("CSRF_TRUSTED_ORIGINS")
SITE_URL = env("SITE_URL", "http://127.0.0.1:8000").rstrip("/")

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "whitenoise.runserver_nostatic",
    "django.contrib.staticfiles",
    "django.contrib.humanize",
    "guardian",
    "simple_history",
    "django_tables2",
    "django_filters",
    "django_htmx",
    "rest_framework",
    "rest_framework.authtoken",
    "drf_spectacular",
    "drf_spectacular_sidecar",
    "axes",
    "django_otp",
    "django_otp.plugins.otp_totp",
    "django_celery_beat",
    "django_prometheus",
    "core",
    "keys",
    "attestations",
    "contacts",
    "dashboard",
    "identity",
    "ops",
]

MIDDLEWARE = [
    # First: each request gets its id (X-Request-ID) for the log lines written while it runs, and one log line
    # with its outcome when it ends; request counts and latencies for /metrics start here too.
    "core.request_log.RequestLogMiddleware",
    "django_prometheus.middleware.PrometheusBeforeMiddleware",
    "django.middleware.security.SecurityMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    # Cache-Control no-store on signed-in and API answers, a Permissions-Policy on all (static files excepted).
    "core.security.ResponseHeadersMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django_otp.middleware.OTPMiddleware",
    # The request's user, named in every log line written from here on.
    "core.request_log.RequestUserMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "core.sessions.IdleTimeoutMiddleware",
    # An auditor's session: signed out once their grant is not current, reads only, every request logged.
    "core.auditors.middleware.AuditorAccessMiddleware",
    "core.two_factor.TwoFactorMiddleware",
    # A customer contact's session reaches the contact pages and nothing else.
    "contacts.middleware.ContactScopeMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "django_htmx.middleware.HtmxMiddleware",
    "simple_history.middleware.HistoryRequestMiddleware",
    "csp.middleware.CSPMiddleware",
    "core.audit.ApiTokenAuditMiddleware",
    # A sign-in refused for its address (too many failures from it) gets the lock-out page and 429.
    "core.address_limit.AddressLimitMiddleware",
    # Last, as django-axes asks: it turns a lock-out raised by authentication into the lock-out page.
    "axes.middleware.AxesMiddleware",
    "django_prometheus.middleware.PrometheusAfterMiddleware",
]

ROOT_URLCONF = "portal.urls"
WSGI_APPLICATION = "portal.wsgi.application"

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
                "dashboard.context_processors.roles",
            ],
        },
    },
]

DATABASE_URL = env("DATABASE_URL")
if PRODUCTION and not DATABASE_URL:
    raise ImproperlyConfigured("DATABASE_URL must be set in production mode.")
DATABASES = {
    "default": dj_database_url.parse(
        DATABASE_URL or f"sqlite:///{BASE_DIR / 'db.sqlite3'}",
        conn_max_age=env_int("DB_CONN_MAX_AGE", 60 if PRODUCTION else 0),
    )
}
# DATABASE_POOLER=pgbouncer: DATABASE_URL names a PgBouncer in transaction mode, where consecutive transactions of
# one Django connection may run on different server connections. Nothing may then outlive a transaction on the
# server: no prepared statements (PgBouncer 1.18 has none) and no server-side cursors, which Django holds open
# across transactions (WITH HOLD) for an ``.iterator()`` outside one.
DATABASE_POOLER = (env("DATABASE_POOLER") or "none").strip().lower()
if DATABASE_POOLER not in {"none", "pgbouncer"}:
    raise ImproperlyConfigured(f"DATABASE_POOLER is 'none' or 'pgbouncer', not {DATABASE_POOLER!r}.")
POOLED = DATABASE_POOLER == "pgbouncer"
if POOLED:
    if not DATABASES["default"]["ENGINE"].endswith("postgresql"):
        raise ImproperlyConfigured("DATABASE_POOLER=pgbouncer needs a PostgreSQL DATABASE_URL (the PgBouncer's address).")
    DATABASES["default"]["DISABLE_SERVER_SIDE_CURSORS"] = True
if DATABASES["default"]["ENGINE"].endswith("postgresql") and env_bool("DB_SERVER_SIDE_BINDING", True):
    # Parameters travel apart from the SQL, and a statement run DB_PREPARE_THRESHOLD times on a connection
    # is prepared there: PostgreSQL stops planning the same reads and writes again (about half of its CPU
    # per decision). Behind the pooler, never (DATABASE_POOLER=pgbouncer; or DB_PREPARE_THRESHOLD=0).
    DATABASES["default"].setdefault("OPTIONS", {}).update(
        server_side_binding=True, prepare_threshold=None if POOLED else env_int("DB_PREPARE_THRESHOLD", 5) or None)
elif POOLED:
    DATABASES["default"].setdefault("OPTIONS", {}).update(prepare_threshold=None)
if DATABASES["default"]["ENGINE"].endswith("sqlite3"):
    # Several threads and processes (server, in-process tasks, tests) share one file: each transaction takes the
    # write lock when it begins (IMMEDIATE) and waits up to the timeout for it. A deferred transaction that read
    # first and then writes fails at once with "database is locked" when another writer is in, whatever the timeout.
    DATABASES["default"].setdefault("OPTIONS", {}).update(
        timeout=20, transaction_mode="IMMEDIATE")
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

AUTHENTICATION_BACKENDS = [
    "axes.backends.AxesStandaloneBackend",
    # Refuses every sign-in from an address with too many recent failures (LOGIN_ADDRESS_FAILURE_LIMIT).
    "core.address_limit.AddressLimitBackend",
    "django.contrib.auth.backends.ModelBackend",
    "guardian.backends.ObjectPermissionBackend",
]
AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]
LOGIN_URL = "login"
LOGIN_REDIRECT_URL = "dashboard"
LOGOUT_REDIRECT_URL = "login"
ANONYMOUS_USER_NAME = None
GUARDIAN_MONKEY_PATCH_USER = False

LANGUAGE_CODE = "en-gb"
TIME_ZONE = env("TIME_ZONE", "UTC")
USE_I18N = True
USE_TZ = True
# One way of writing dates on every page: "10 Nov 2026", "10 Nov 2026 14:05" (in TIME_ZONE). The format module
# wins over the en-gb locale's own formats; the settings apply when translation is off.
FORMAT_MODULE_PATH = ["portal.formats"]
DATE_FORMAT = "j M Y"
DATETIME_FORMAT = "j M Y H:i"
SHORT_DATE_FORMAT = "j M Y"
SHORT_DATETIME_FORMAT = "j M Y H:i"

STATIC_URL = "static/"
STATIC_ROOT = BASE_DIR / "staticfiles"
STATICFILES_DIRS = [BASE_DIR / "static"]
MEDIA_ROOT = Path(env("MEDIA_ROOT", str(BASE_DIR / "media")))
MEDIA_URL = "media/"
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    # Evidence exports and the parts of a report while it renders: files under MEDIA_ROOT, or with
    # EXPORT_STORAGE=s3 a bucket of S3-compatible object storage that every web process and worker shares.
    "exports": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {
        "BACKEND": (
            "whitenoise.storage.CompressedManifestStaticFilesStorage"
            if PRODUCTION
            else "django.contrib.staticfiles.storage.StaticFilesStorage"
        )
    },
}
EXPORT_STORAGE = (env("EXPORT_STORAGE") or "local").strip().lower()
if EXPORT_STORAGE == "s3":
    if not env("AWS_STORAGE_BUCKET_NAME"):
        raise ImproperlyConfigured("EXPORT_STORAGE=s3 needs AWS_STORAGE_BUCKET_NAME.")
    # django-storages; credentials from AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY or boto3's other sources
    # (an instance role, AWS_PROFILE). Objects stay private: downloads go through the portal's checks.
    STORAGES["exports"] = {"BACKEND": "storages.backends.s3.S3Storage", "OPTIONS": {
        "bucket_name": env("AWS_STORAGE_BUCKET_NAME"),
        "endpoint_url": env("AWS_S3_ENDPOINT_URL") or None,
        "region_name": env("AWS_S3_REGION_NAME") or None,
        "addressing_style": env("AWS_S3_ADDRESSING_STYLE") or None,
        "location": env("AWS_LOCATION"),
        "default_acl": None,
        "querystring_auth": True,
        # A file is replaced only by deleting it first, as on local disk.
        "file_overwrite": False,
        # A file read (a download, a part being merged) is buffered in memory, never spilled to local disk.
        "max_memory_size": 0,
    }}
elif EXPORT_STORAGE != "local":
    raise ImproperlyConfigured(f"EXPORT_STORAGE is 'local' or 's3', not {EXPORT_STORAGE!r}.")

# API key fingerprints: HMAC-SHA256 under a pepper kept outside the database. Old peppers stay
# listed (``KEY_FINGERPRINT_OLD_PEPPERS="1:old-value"``) so keys fingerprinted before a rotation
# still match.
KEY_FINGERPRINT_PEPPER = required("KEY_FINGERPRINT_PEPPER", "local-only-fingerprint-pepper")
KEY_FINGERPRINT_PEPPER_VERSION = env_int("KEY_FINGERPRINT_PEPPER_VERSION", 1)
KEY_FINGERPRINT_OLD_PEPPERS = {
    int(version): value
    for version, _, value in (item.partition(":") for item in env_list("KEY_FINGERPRINT_OLD_PEPPERS"))
}

IMPORT_MAX_BYTES = env_int("IMPORT_MAX_BYTES", 20 * 1024 * 1024)
KEY_STALE_AFTER_DAYS = env_int("KEY_STALE_AFTER_DAYS", 90)
# From this many keys on, compliance's dashboard reads its key figures from the summary a worker job refreshes
# every few minutes (dashboard.summary) instead of counting every key per view.
DASHBOARD_SUMMARY_MIN_KEYS = env_int("DASHBOARD_SUMMARY_MIN_KEYS", 100_000)
# From this many items on, a campaign's page reads its per-customer progress and reviewer figures from those a
# worker job counts every few minutes (attestations.services.progress) instead of counting them per view.
CAMPAIGN_FIGURES_MIN_ITEMS = env_int("CAMPAIGN_FIGURES_MIN_ITEMS", 20_000)
# Safe release: a released key is suspended this many days while its usage is watched, then revoked
# (0 revokes at once); a campaign or schedule may set its own number.
RELEASE_GRACE_DAYS = env_int("RELEASE_GRACE_DAYS", 7)
# Successor handshake: days a named successor has to accept a departed owner's key, and what happens
# to the key when nobody accepts and no campaign says otherwise (suspend, revoke or keep_and_flag).
SUCCESSION_ACCEPT_DAYS = env_int("SUCCESSION_ACCEPT_DAYS", 7)
SUCCESSION_DEFAULT_ACTION = env("SUCCESSION_DEFAULT_ACTION", "suspend")
SYSTEM_USERNAME = env("SYSTEM_USERNAME", "system")

# Revocation webhooks: each issuing system's signing secret is derived from this key (never stored);
# failed calls are retried after REVOCATION_BACKOFF_SECONDS * 2**(attempt - 1) until the maximum.
# Production without it starts, but sends no revocation call (each attempt records why) rather than
# signing with a publicly known key.
WEBHOOK_SIGNING_KEY = env("WEBHOOK_SIGNING_KEY") or ("" if PRODUCTION else "local-only-webhook-signing-key")
REVOCATION_MAX_ATTEMPTS = env_int("REVOCATION_MAX_ATTEMPTS", 10)
REVOCATION_TIMEOUT_SECONDS = env_int("REVOCATION_TIMEOUT_SECONDS", 10)
REVOCATION_BACKOFF_SECONDS = env_int("REVOCATION_BACKOFF_SECONDS", 60)

# Retention, in days: nothing is deleted earlier; deleting after is a recorded, chained event. 0 keeps forever.
EVIDENCE_EXPORT_RETENTION_DAYS = env_int("EVIDENCE_EXPORT_RETENTION_DAYS", 7 * 366)
ACCESS_RECORD_RETENTION_DAYS = env_int("ACCESS_RECORD_RETENTION_DAYS", 2 * 366)
# Every evidence export is signed (PAdES, pyHanko). Without EVIDENCE_SIGNING_PKCS12 the instance signs
# with a key and self-signed certificate it creates on first use in EVIDENCE_SIGNING_DIR: outside the
# database and the repository, and shared by every worker (a shared volume when workers run apart).
# EVIDENCE_SIGNING_PKCS12 (and its password) selects the organisation's own certificate instead.
# With EVIDENCE_TSA_URL (an RFC 3161 time-stamp authority) each signature is also time-stamped (PAdES B-T).
EVIDENCE_SIGNING_DIR = Path(env("EVIDENCE_SIGNING_DIR") or user_data_dir() / "evidence-signing")
EVIDENCE_SIGNING_PKCS12 = env("EVIDENCE_SIGNING_PKCS12")
EVIDENCE_SIGNING_PASSWORD = env("EVIDENCE_SIGNING_PASSWORD")
EVIDENCE_TSA_URL = env("EVIDENCE_TSA_URL")

# Celery: in-process locally; a real broker (Redis) in production.
CELERY_BROKER_URL = env("CELERY_BROKER_URL", "memory://localhost/")
CELERY_RESULT_BACKEND = env("CELERY_RESULT_BACKEND", "")
CELERY_TASK_ALWAYS_EAGER = env_bool("CELERY_TASK_ALWAYS_EAGER", not env("CELERY_BROKER_URL"))
CELERY_TASK_EAGER_PROPAGATES = True
CELERY_TASK_ACKS_LATE = True
CELERY_TASK_REJECT_ON_WORKER_LOST = True
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
CELERY_TIMEZONE = TIME_ZONE
CELERY_BEAT_SCHEDULER = "django_celery_beat.schedulers:DatabaseScheduler"

EMAIL_BACKEND = env(
    "EMAIL_BACKEND",
    "django.core.mail.backends.smtp.EmailBackend" if PRODUCTION else "django.core.mail.backends.console.EmailBackend",
)
EMAIL_HOST = env("EMAIL_HOST", "localhost")
EMAIL_PORT = env_int("EMAIL_PORT", 25)
DEFAULT_FROM_EMAIL = env("DEFAULT_FROM_EMAIL", "keys-portal@localhost")

REST_FRAMEWORK = {
    "DEFAULT_AUTHENTICATION_CLASSES": [
        "rest_framework.authentication.SessionAuthentication",
        "keys.api.authentication.IntegrationTokenAuthentication",
        "core.personal_tokens.PersonalTokenAuthentication",  # a user's personal token (never an auditor's)
    ],
    "DEFAULT_PERMISSION_CLASSES": ["rest_framework.permissions.IsAuthenticated"],
    "DEFAULT_PAGINATION_CLASS": "core.api.CursorPagination",  # keyset cursors: any page as fast as the first
    "PAGE_SIZE": 50,
    "DEFAULT_FILTER_BACKENDS": ["core.api.FilterBackend"],
    "DEFAULT_SCHEMA_CLASS": "drf_spectacular.openapi.AutoSchema",
    "EXCEPTION_HANDLER": "core.api.exception_handler",
}
# The OpenAPI schema (/api/schema/) and its docs (/api/docs/) for anonymous callers too; otherwise only for
# signed-in users and tokens.
API_DOCS_PUBLIC = env_bool("API_DOCS_PUBLIC", not PRODUCTION)
SPECTACULAR_SETTINGS = {
    "TITLE": "API key attestation portal",
    "DESCRIPTION": (
        "Lists are paged by cursor: each answers `{next, previous, results}`, where `next` and `previous` are the "
        "URLs of the neighbouring pages (null at either end) carrying an opaque `cursor` and the request's filters. "
        "Lists give no `count` and take no `page` number; a key's history is the one list still numbered."
    ),
    "VERSION": "1.0.0",
    "SERVE_INCLUDE_SCHEMA": False,
    # Swagger UI from the vendored sidecar package: no CDN, so the Content-Security-Policy holds.
    "SWAGGER_UI_DIST": "SIDECAR",
    "SWAGGER_UI_FAVICON_HREF": "SIDECAR",
    "REDOC_DIST": "SIDECAR",
    # Each state and kind is one named component, whichever serializer uses it.
    "ENUM_NAME_OVERRIDES": {
        f"{name}Enum": f"{module}.{name}" for module, names in {
            "keys.choices": ("ContractStatus", "Environment", "WorkflowStatus", "RiskTier", "KeyStatus",
                             "RevocationReason", "LifecycleAction"),
            "attestations.choices": ("CampaignStatus", "ItemStatus", "Decision", "DefaultAction", "Recommendation"),
        }.items() for name in names
    },
}

DJANGO_TABLES2_TEMPLATE = "portal/table.html"

# Never show a submitted secret on an error page, whatever the view forgot to mark.
DEFAULT_EXCEPTION_REPORTER_FILTER = "core.security.SecretSafeExceptionReporterFilter"

# A shared cache (Redis, the broker production already runs): CACHE_URL, or in production a redis://
# CELERY_BROKER_URL. Sessions are then Django's cached_db engine (read from the cache, written through to
# the database); without a shared cache each process keeps its own memory cache and sessions stay in
# the database.
CACHE_URL = env("CACHE_URL") or (CELERY_BROKER_URL if PRODUCTION and CELERY_BROKER_URL.startswith("redis") else "")
if CACHE_URL:
    CACHES = {"default": {"BACKEND": "django.core.cache.backends.redis.RedisCache", "LOCATION": CACHE_URL,
                          "KEY_PREFIX": env("CACHE_KEY_PREFIX", "portal")}}
    SESSION_ENGINE = "django.contrib.sessions.backends.cached_db"
else:
    CACHES = {"default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"}}
    SESSION_ENGINE = "django.contrib.sessions.backends.db"
SESSION_COOKIE_AGE = env_int("SESSION_COOKIE_AGE", 8 * 3600)
SESSION_EXPIRE_AT_BROWSER_CLOSE = env_bool("SESSION_EXPIRE_AT_BROWSER_CLOSE", True)
# A signed-in session unused for this long ends (SESSION_COOKIE_AGE stays the absolute limit).
SESSION_IDLE_TIMEOUT = env_int("SESSION_IDLE_TIMEOUT", 30 * 60)
SESSION_COOKIE_HTTPONLY = True
CSRF_COOKIE_HTTPONLY = False
X_FRAME_OPTIONS = "DENY"
SECURE_CONTENT_TYPE_NOSNIFF = True
SECURE_REFERRER_POLICY = "same-origin"
# Browser features no page of the portal uses, turned off for it and anything it would frame.
PERMISSIONS_POLICY = ", ".join(f"{feature}=()" for feature in (
    "accelerometer", "camera", "display-capture", "geolocation", "gyroscope", "magnetometer", "microphone",
    "payment", "usb",
))
if PRODUCTION:
    SESSION_COOKIE_SECURE = True
    CSRF_COOKIE_SECURE = True
    SECURE_SSL_REDIRECT = env_bool("SECURE_SSL_REDIRECT", True)
    SECURE_HSTS_SECONDS = env_int("SECURE_HSTS_SECONDS", 31536000)
    SECURE_HSTS_INCLUDE_SUBDOMAINS = True
    SECURE_HSTS_PRELOAD = True
    SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
    # Load balancers and scrapers inside the network probe these over plain HTTP (see Operations in the README).
    SECURE_REDIRECT_EXEMPT = [r"^health/$", r"^metrics$"]

# Content-Security-Policy: only this origin's files; no inline script or style, no framing.
CONTENT_SECURITY_POLICY = {
    "DIRECTIVES": {
        "default-src": ["'self'"],
        "script-src": ["'self'"],
        "style-src": ["'self'"],
        "img-src": ["'self'", "data:"],
        "font-src": ["'self'"],
        "connect-src": ["'self'"],
        "object-src": ["'none'"],
        "base-uri": ["'self'"],
        "frame-ancestors": ["'none'"],
        "form-action": ["'self'"],
    },
}

# Login protection: five failures for one username from one address lock that pair out for 15 minutes.
AXES_FAILURE_LIMIT = env_int("AXES_FAILURE_LIMIT", 5)
AXES_COOLOFF_TIME = datetime.timedelta(minutes=env_int("AXES_COOLOFF_MINUTES", 15))
AXES_LOCKOUT_PARAMETERS = [["username", "ip_address"]]
AXES_RESET_ON_SUCCESS = True
AXES_LOCKOUT_TEMPLATE = "registration/locked_out.html"
# The client's address for lock-outs and the access audit: REMOTE_ADDR, or behind one trusted reverse
# proxy the address that proxy appended to X-Forwarded-For.
TRUST_X_FORWARDED_FOR = env_bool("TRUST_X_FORWARDED_FOR", False)
AXES_CLIENT_IP_CALLABLE = "core.audit.client_ip"
# Password spraying (a few tries on each of many usernames) from one address: this many failed sign-ins
# from it within the window refuse every sign-in from it until they age out (0 turns the limit off).
LOGIN_ADDRESS_FAILURE_LIMIT = env_int("LOGIN_ADDRESS_FAILURE_LIMIT", 50)
LOGIN_ADDRESS_WINDOW = datetime.timedelta(minutes=env_int("LOGIN_ADDRESS_WINDOW_MINUTES", 15))

# Customer contacts sign in with an emailed single-use link plus a one-time code sent to the same address.
CONTACT_LINK_HOURS = env_int("CONTACT_LINK_HOURS", 7 * 24)
CONTACT_CODE_MINUTES = env_int("CONTACT_CODE_MINUTES", 10)
CONTACT_CODE_MAX_FAILURES = env_int("CONTACT_CODE_MAX_FAILURES", 5)
CONTACT_CODES_PER_LINK = env_int("CONTACT_CODES_PER_LINK", 3)
CONTACT_SESSION_SECONDS = env_int("CONTACT_SESSION_SECONDS", 3600)

# Optional TOTP second factor (django-otp). Users with a confirmed device verify a code after the
# password; with OTP_REQUIRED_FOR_STAFF, staff and compliance must enrol one before anything else.
OTP_REQUIRED_FOR_STAFF = env_bool("OTP_REQUIRED_FOR_STAFF", False)

# The identity provider's group names and the portal role each gives, as "group=role,group=role" (roles: owner,
# compliance, admin). Read from the groups claim at single sign-on, or from SCIM groups when SCIM_ENABLED.
IDENTITY_GROUP_ROLES = {}
for _pair in env_list("IDENTITY_GROUP_ROLES"):
    _group, _sep, _role = _pair.rpartition("=")
    if not _sep or _role.strip() not in ("owner", "compliance", "admin"):
        raise ImproperlyConfigured(f"IDENTITY_GROUP_ROLES: {_pair!r} is not group=owner|compliance|admin")
    IDENTITY_GROUP_ROLES[_group.strip()] = _role.strip()
# SCIM 2.0 provisioning at /scim/v2/: when on, SCIM group membership decides roles and the groups claim is ignored.
SCIM_ENABLED = env_bool("SCIM_ENABLED", False)
# django-scim2: people are Django accounts with their owner profile, groups identity.ScimGroup; clients authenticate
# with a bearer token an admin issues (/identity/scim-tokens/); off (404) unless SCIM_ENABLED.
SCIM_SERVICE_PROVIDER = {
    "USER_ADAPTER": "identity.scim.adapters.ScimUser",
    "GROUP_MODEL": "identity.models.ScimGroup",
    "GROUP_ADAPTER": "identity.scim.adapters.ScimGroupAdapter",
    "USER_FILTER_PARSER": "identity.scim.filters.PeopleFilter",
    "GROUP_FILTER_PARSER": "identity.scim.filters.GroupFilter",
    "GET_QUERYSET_POST_PROCESSOR_GETTER": "identity.scim.filters.queryset_post_processor",
    "SERVICE_PROVIDER_CONFIG_MODEL": "identity.scim.adapters.ServiceProviderConfig",
    "BASE_LOCATION_GETTER": "identity.scim.adapters.base_location",
    "AUTH_CHECK_MIDDLEWARE": "identity.scim.auth.ScimTokenAuthMiddleware",
    "NETLOC": SITE_URL.partition("://")[2].split("/")[0],
    "SCHEME": SITE_URL.partition("://")[0] or "https",
    "WWW_AUTHENTICATE_HEADER": 'Bearer realm="scim"',
    "AUTHENTICATION_SCHEMES": [{
        "type": "oauthbearertoken", "name": "Bearer token", "primary": True,
        "description": "A SCIM token an admin of the portal issues: Authorization: Bearer scim_…",
        "specUri": "https://www.rfc-editor.org/rfc/rfc6750",
    }],
}
OTP_TOTP_ISSUER = env("OTP_TOTP_ISSUER", "API key portal")

# Single sign-on with OpenID Connect (the README's "Single sign-on"): on once OIDC_ISSUER and OIDC_RP_CLIENT_ID are
# set. The endpoints come from the issuer's discovery document; an OIDC_OP_* endpoint set here wins over it.
OIDC_ISSUER = env("OIDC_ISSUER").rstrip("/")
OIDC_RP_CLIENT_ID = env("OIDC_RP_CLIENT_ID")
OIDC_RP_CLIENT_SECRET = env("OIDC_RP_CLIENT_SECRET")
OIDC_RP_SCOPES = env("OIDC_RP_SCOPES", "openid email profile groups")
OIDC_RP_SIGN_ALGO = env("OIDC_RP_SIGN_ALGO", "RS256")
OIDC_RP_IDP_SIGN_KEY = env("OIDC_RP_IDP_SIGN_KEY")
OIDC_OP_AUTHORIZATION_ENDPOINT = env("OIDC_OP_AUTHORIZATION_ENDPOINT")
OIDC_OP_TOKEN_ENDPOINT = env("OIDC_OP_TOKEN_ENDPOINT")
OIDC_OP_USER_ENDPOINT = env("OIDC_OP_USER_ENDPOINT")
OIDC_OP_JWKS_ENDPOINT = env("OIDC_OP_JWKS_ENDPOINT")
OIDC_TOKEN_USE_BASIC_AUTH = env_bool("OIDC_TOKEN_USE_BASIC_AUTH", False)
OIDC_USE_PKCE = env_bool("OIDC_USE_PKCE", True)
OIDC_VERIFY_SSL = env_bool("OIDC_VERIFY_SSL", True)
OIDC_TIMEOUT = env_int("OIDC_TIMEOUT", 10)
OIDC_AUTHENTICATION_CALLBACK_URL = "sso:callback"
OIDC_PROVIDER_NAME = env("OIDC_PROVIDER_NAME", "single sign-on")
# Whom the refusal page tells people to ask for access.
OIDC_ACCESS_HELP = env("OIDC_ACCESS_HELP", "the portal's administrators")
OIDC_SUBJECT_CLAIM = env("OIDC_SUBJECT_CLAIM", "sub")
OIDC_GROUPS_CLAIM = env("OIDC_GROUPS_CLAIM", "groups")
OIDC_MATCH_BY_EMAIL = env_bool("OIDC_MATCH_BY_EMAIL", False)
OIDC_MANAGER_CLAIM = env("OIDC_MANAGER_CLAIM")
OIDC_DEPARTMENT_CLAIM = env("OIDC_DEPARTMENT_CLAIM")
# A sign-in whose ID token names one of these methods (amr, RFC 8176) or levels (acr) had a second factor at the
# provider: the portal's own TOTP is not asked again.
OIDC_MFA_AMR_VALUES = env_list("OIDC_MFA_AMR_VALUES", "mfa,otp,hwk,swk,sc,fpt,face,iris,retina,vbm")
OIDC_MFA_ACR_VALUES = env_list("OIDC_MFA_ACR_VALUES")
# Off: employees sign in through the provider only; superusers (break-glass) and auditors keep their password.
PASSWORD_LOGIN = env_bool("PASSWORD_LOGIN", True)
if not PASSWORD_LOGIN and not (OIDC_ISSUER and OIDC_RP_CLIENT_ID):
    raise ImproperlyConfigured("PASSWORD_LOGIN=false needs single sign-on: set OIDC_ISSUER and OIDC_RP_CLIENT_ID.")
AUTHENTICATION_BACKENDS = [*AUTHENTICATION_BACKENDS, "identity.sso.backend.SingleSignOnBackend"]

# External auditors: compliance grants read access for at most AUDITOR_GRANT_MAX_DAYS days at a time; with
# AUDITOR_OTP_REQUIRED (on in production) an auditor enrols a TOTP authenticator before reading anything.
AUDITOR_GRANT_MAX_DAYS = env_int("AUDITOR_GRANT_MAX_DAYS", 90)
if AUDITOR_GRANT_MAX_DAYS < 1:
    raise ImproperlyConfigured("AUDITOR_GRANT_MAX_DAYS must be at least 1.")
AUDITOR_OTP_REQUIRED = env_bool("AUDITOR_OTP_REQUIRED", PRODUCTION)

# Operations (see the README's Operations section). Addresses are single addresses or networks (10.0.0.0/8),
# comma-separated; the client's address is the one the access audit records (TRUST_X_FORWARDED_FOR).
OPS_ALLOWED_IPS = env_list("OPS_ALLOWED_IPS", "127.0.0.1,::1")
# /health/ answers everyone with its status code and overall status; these addresses also learn which part failed.
HEALTH_ALLOWED_IPS = env_list("HEALTH_ALLOWED_IPS", ",".join(OPS_ALLOWED_IPS))
# /metrics answers these addresses, and any caller sending "Authorization: Bearer <METRICS_TOKEN>" (none set: no token).
METRICS_ALLOWED_IPS = env_list("METRICS_ALLOWED_IPS", ",".join(OPS_ALLOWED_IPS))
METRICS_TOKEN = env("METRICS_TOKEN")
# A Celery worker records a heartbeat every minute (through beat); /health/ fails once the last is older than this.
WORKER_HEARTBEAT_MAX_AGE = env_int("WORKER_HEARTBEAT_MAX_AGE", 300)

LOG_LEVEL = env("LOG_LEVEL", "INFO")
# json: one JSON object per line (time, level, logger, message, request_id, user, outcome); plain: readable lines.
LOG_FORMAT = env("LOG_FORMAT", "plain" if DEBUG else "json").lower()
if LOG_FORMAT not in {"json", "plain"}:
    raise ImproperlyConfigured("LOG_FORMAT must be json or plain.")
LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "filters": {"request": {"()": "core.request_log.RequestContextFilter"}},
    "formatters": {
        "plain": {"format": "%(asctime)s %(levelname)s %(name)s [%(request_id)s %(user)s] %(message)s"},
        "json": {"()": "core.request_log.JsonFormatter"},
    },
    "handlers": {"console": {"class": "logging.StreamHandler", "formatter": LOG_FORMAT, "filters": ["request"]}},
    "root": {"handlers": ["console"], "level": LOG_LEVEL},
    "loggers": {"django.db.backends": {"level": "WARNING"}},
}
# A worker with JSON logs writes them through the configuration above instead of Celery's own format.
CELERY_WORKER_HIJACK_ROOT_LOGGER = LOG_FORMAT != "json"
