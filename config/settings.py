"""Settings for the shop: every value a deployment changes comes from the environment.

An optional `.env` file beside manage.py is read first; real environment variables win.
See `.env.example` for each variable.
"""

import os
import zoneinfo
from pathlib import Path
from urllib.parse import urlsplit

import dj_database_url
from django.core.exceptions import ImproperlyConfigured
from dotenv import load_dotenv

BASE_DIR = Path(__file__).resolve().parent.parent
load_dotenv(BASE_DIR / ".env", override=False)


def env_bool(name: str, default: bool) -> bool:
    value = os.environ.get(name, "").strip().lower()
    if not value:
        return default
    if value in {"1", "true", "yes", "on"}:
        return True
    if value in {"0", "false", "no", "off"}:
        return False
    raise ImproperlyConfigured(f"{name} must be true or false, not {value!r}")


def env_list(name: str, default: str = "") -> list[str]:
    return [item.strip() for item in os.environ.get(name, default).split(",") if item.strip()]


DEBUG = env_bool("DJANGO_DEBUG", False)

_DEV_SECRET_KEY = "django-insecure-development-only-never-use-in-production"
SECRET_KEY = os.environ.get("DJANGO_SECRET_KEY", "").strip()
if not SECRET_KEY:
    if not DEBUG:
        # Sessions and CSRF tokens are signed with it: production must never run on a known key.
        raise ImproperlyConfigured(
            "DJANGO_SECRET_KEY is not set. Set it to a long random value "
            "(python -c 'import secrets; print(secrets.token_urlsafe(50))'), "
            "or set DJANGO_DEBUG=true for local development."
        )
    SECRET_KEY = _DEV_SECRET_KEY
elif not DEBUG and (len(SECRET_KEY) < 32 or SECRET_KEY.startswith("django-insecure")):
    raise ImproperlyConfigured(
        "DJANGO_SECRET_KEY is too weak for production: use 50 random characters."
    )

ALLOWED_HOSTS = env_list("DJANGO_ALLOWED_HOSTS", "localhost,127.0.0.1,[::1]")
CSRF_TRUSTED_ORIGINS = env_list("DJANGO_CSRF_TRUSTED_ORIGINS")

INSTALLED_APPS = [
    "shop.apps.ShopAdminConfig",  # django.contrib.admin with the owner's overview
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "whitenoise.runserver_nostatic",
    "django.contrib.staticfiles",
    "axes",
    # Before django_tasks_db: the shop's `db_worker` (the library's, plus housekeeping) wins.
    "shop",
    "django_tasks",
    "django_tasks_db",
]

MIDDLEWARE = [
    "shop.web.middleware.RejectUndecodableCharsetMiddleware",
    "django.middleware.security.SecurityMiddleware",
    "shop.web.middleware.ContentSecurityPolicyMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "django_ratelimit.middleware.RatelimitMiddleware",
    # Last, as django-axes asks: turns a locked-out admin login into a 429 page.
    "axes.middleware.AxesMiddleware",
]

AUTHENTICATION_BACKENDS = [
    "axes.backends.AxesStandaloneBackend",
    "django.contrib.auth.backends.ModelBackend",
]

ROOT_URLCONF = "config.urls"
WSGI_APPLICATION = "config.wsgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
                "shop.web.context_processors.shop",
            ],
        },
    },
]

DATABASES = {
    # An empty DATABASE_URL (a blank line in .env) means the default, as an unset one does.
    "default": dj_database_url.parse(
        os.environ.get("DATABASE_URL") or f"sqlite:///{BASE_DIR / 'db.sqlite3'}",
        # Persistent connections: opening one per request would dominate a fast page.
        conn_max_age=int(os.environ.get("DJANGO_CONN_MAX_AGE", "600")),
        # Off (Django's default): a check is a round trip at the start of every request, a
        # quarter of a returning storefront. Without it, after a database restart each worker
        # fails its first request once (every write is in a transaction, so nothing is half
        # done; Stripe retries a failed webhook) and then reconnects.
        conn_health_checks=env_bool("DJANGO_CONN_HEALTH_CHECKS", False),
    )
}
if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":
    DATABASES["default"]["OPTIONS"] = {
        # IMMEDIATE takes the write lock when a transaction starts, so two writers queue
        # instead of failing with "database is locked" when one upgrades a read lock.
        "transaction_mode": "IMMEDIATE",
        "timeout": 20,
        "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;",
    }

DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]

LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True
# The shop's own days: the owner's overview counts a sale on the day it was paid in this zone.
SHOP_TIME_ZONE = os.environ.get("SHOP_TIME_ZONE", "").strip() or "UTC"
try:
    zoneinfo.ZoneInfo(SHOP_TIME_ZONE)
except (zoneinfo.ZoneInfoNotFoundError, ValueError):
    raise ImproperlyConfigured(
        f"SHOP_TIME_ZONE={SHOP_TIME_ZONE!r} is not a time zone: use a name from the IANA "
        "database, such as UTC, Europe/Berlin or America/New_York."
    ) from None

STATIC_URL = "static/"
STATIC_ROOT = BASE_DIR / "staticfiles"
# After `manage.py collectstatic`, files get content hashes and are cached forever; without it
# (a fresh checkout) WhiteNoise serves them straight from the app, so the shop still works.
_COLLECTED = (STATIC_ROOT / "staticfiles.json").exists()
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {
        "BACKEND": "django.contrib.staticfiles.storage.StaticFilesStorage"
        if DEBUG
        else "shop.web.storage.StaticStorage"
    },
}
WHITENOISE_USE_FINDERS = DEBUG or not _COLLECTED
WHITENOISE_AUTOREFRESH = DEBUG

# Django sessions serve the admin alone: short, and ended with the browser.
SESSION_COOKIE_AGE = int(os.environ.get("DJANGO_ADMIN_SESSION_HOURS", "8")) * 3600
SESSION_EXPIRE_AT_BROWSER_CLOSE = True
SESSION_COOKIE_HTTPONLY = True
# The customer's signed cookie (shop/web/customer.py): a year keeps My Orders visible.
CUSTOMER_COOKIE_AGE = 365 * 24 * 3600
SESSION_COOKIE_SAMESITE = "Lax"
CSRF_COOKIE_HTTPONLY = True

REDIS_URL = os.environ.get("REDIS_URL", "").strip()
CACHES = {
    "default": (
        {"BACKEND": "django.core.cache.backends.redis.RedisCache", "LOCATION": REDIS_URL}
        if REDIS_URL
        else {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"}
    )
}

# --- Security -------------------------------------------------------------------------------
SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
SECURE_SSL_REDIRECT = False if DEBUG else env_bool("DJANGO_SECURE_SSL_REDIRECT", True)
# Load balancers and monitors often check over plain HTTP from inside the network, and count a
# redirect as a failure: the health checks answer there too (they show no customer's data).
SECURE_REDIRECT_EXEMPT = [r"^healthz(/worker)?$"]
# Secure cookies follow HTTPS: over plain-HTTP loopback they would never come back.
SESSION_COOKIE_SECURE = SECURE_SSL_REDIRECT
CSRF_COOKIE_SECURE = SECURE_SSL_REDIRECT
SECURE_HSTS_SECONDS = 31536000 if SECURE_SSL_REDIRECT else 0
SECURE_HSTS_INCLUDE_SUBDOMAINS = env_bool("DJANGO_HSTS_INCLUDE_SUBDOMAINS", True)
SECURE_HSTS_PRELOAD = env_bool("DJANGO_HSTS_PRELOAD", True)
SECURE_CONTENT_TYPE_NOSNIFF = True
SECURE_REFERRER_POLICY = "same-origin"
SECURE_CROSS_ORIGIN_OPENER_POLICY = "same-origin"
X_FRAME_OPTIONS = "DENY"
# Hard ceiling for any body; the checkout form (16 KiB) and the webhook have their own limits.
DATA_UPLOAD_MAX_MEMORY_SIZE = 256 * 1024
DATA_UPLOAD_MAX_NUMBER_FIELDS = 50

# --- Rate limits (django-ratelimit, counted in the cache: set REDIS_URL to share them) ----
RATELIMIT_ENABLE = env_bool("SHOP_RATELIMIT_ENABLE", True)
RATELIMIT_VIEW = "shop.web.errorviews.rate_limited"
CHECKOUT_RATE_PER_BROWSER = os.environ.get("CHECKOUT_RATE_PER_BROWSER", "10/m")
CHECKOUT_RATE_PER_IP = os.environ.get("CHECKOUT_RATE_PER_IP", "30/m")
# The success page may ask Stripe about a pending order: bounded like checkout.
SUCCESS_RATE_PER_BROWSER = os.environ.get("SUCCESS_RATE_PER_BROWSER", "30/m")
SUCCESS_RATE_PER_IP = os.environ.get("SUCCESS_RATE_PER_IP", "60/m")
# Find my orders sends an email each time: few per address, a few more per client address.
FIND_ORDERS_RATE_PER_ADDRESS = os.environ.get("FIND_ORDERS_RATE_PER_ADDRESS", "5/h")
FIND_ORDERS_RATE_PER_IP = os.environ.get("FIND_ORDERS_RATE_PER_IP", "20/h")
# Behind a proxy every request comes from the proxy: name the META key that carries the
# client's address (e.g. HTTP_X_REAL_IP), and only if the proxy always overwrites it.
SHOP_CLIENT_IP_META_KEY = os.environ.get("SHOP_CLIENT_IP_META_KEY", "REMOTE_ADDR")
RATELIMIT_IP_META_KEY = "shop.web.http.client_ip"

# Admin logins (django-axes): after SHOP_LOGIN_FAILURE_LIMIT wrong passwords from one address,
# or for one username, further attempts are refused for an hour, whatever the password.
AXES_FAILURE_LIMIT = int(os.environ.get("SHOP_LOGIN_FAILURE_LIMIT", "5"))
AXES_LOCKOUT_PARAMETERS = ["ip_address", "username"]
AXES_COOLOFF_TIME = 1  # hours
AXES_RESET_ON_SUCCESS = True
AXES_CLIENT_IP_CALLABLE = "shop.web.http.axes_client_ip"
AXES_LOCKOUT_CALLABLE = "shop.web.errorviews.login_locked_out"
AXES_DISABLE_ACCESS_LOG = True

ADMIN_URL = os.environ.get("DJANGO_ADMIN_URL", "admin/" if DEBUG else "").strip()
if not ADMIN_URL:
    import hashlib

    # Not guessable, yet stable across restarts and servers: derived from the secret key.
    # `python manage.py admin_url` prints it.
    ADMIN_URL = (
        "admin-" + hashlib.sha256(("admin-url:" + SECRET_KEY).encode()).hexdigest()[:16] + "/"
    )
if not ADMIN_URL.endswith("/"):
    ADMIN_URL += "/"

# --- Stripe ---------------------------------------------------------------------------------
STRIPE_SECRET_KEY = os.environ.get("STRIPE_SECRET_KEY", "").strip()
# Demo payments: a local page stands in for Stripe and its Pay marks orders paid for no money.
# On by default only for development; in production it must be asked for (demos, load tests).
SHOP_DEMO_PAYMENTS = env_bool("SHOP_DEMO_PAYMENTS", DEBUG)
if not STRIPE_SECRET_KEY and not SHOP_DEMO_PAYMENTS:
    # A forgotten variable on a real deploy must not turn the shop into a free giveaway.
    raise ImproperlyConfigured(
        "STRIPE_SECRET_KEY is not set. Set it to your Stripe secret key (sk_live_... or "
        "sk_test_...), or set SHOP_DEMO_PAYMENTS=true to run demo payments, which take no "
        "money (for demos and load tests only)."
    )
STRIPE_WEBHOOK_SECRETS = env_list("STRIPE_WEBHOOK_SECRET")
STRIPE_API_BASE = os.environ.get("STRIPE_API_BASE", "").strip().rstrip("/")
# 3 tries x 6 s + back-off ~ 20 s per call; a checkout makes at most two calls, well under 45 s.
STRIPE_TIMEOUT_SECONDS = float(os.environ.get("STRIPE_TIMEOUT_SECONDS", "6"))
# Optional allow-list of the addresses Stripe sends webhooks from (empty = off).
STRIPE_WEBHOOK_ALLOWED_IPS = env_list("STRIPE_WEBHOOK_ALLOWED_IPS")
STRIPE_WEBHOOK_TOLERANCE_SECONDS = 300
STRIPE_WEBHOOK_MAX_BYTES = DATA_UPLOAD_MAX_MEMORY_SIZE
SHOP_CURRENCY = "usd"
# Stripe accepts 30 minutes to 24 hours; short keeps abandoned carts from lingering.
CHECKOUT_SESSION_MINUTES = 45
# Where the customer's browser is sent to pay; in tests this is the fake Stripe server.
CHECKOUT_ORIGIN = (
    "{0.scheme}://{0.netloc}".format(urlsplit(STRIPE_API_BASE))
    if STRIPE_API_BASE
    else "https://checkout.stripe.com"
)

# --- Background tasks (django-tasks with its database backend) -------------------------------
# A task is a row in our own database, written in the caller's transaction: a rolled-back
# change enqueues nothing, a committed one is never forgotten. `manage.py db_worker` runs them.
TASKS = {"default": {"BACKEND": "django_tasks_db.DatabaseBackend", "QUEUES": ["default"]}}
# A task still running after this long is taken to have lost its worker (killed, machine gone)
# and is run again; every task of the shop is safe to run twice. Far above any task's own
# time limit (an email gives up after EMAIL_TIMEOUT).
SHOP_TASK_LOST_AFTER_SECONDS = float(os.environ.get("SHOP_TASK_LOST_AFTER_SECONDS", "300"))
# How often each worker looks for lost tasks, queued emails without a task and the schedule.
SHOP_WORKER_HOUSEKEEPING_SECONDS = float(os.environ.get("SHOP_WORKER_HOUSEKEEPING_SECONDS", "30"))
# /healthz/worker answers 503 (and the owner's overview warns) when no worker's heartbeat, written
# every housekeeping round, is this recent, or a due task has waited this long for a worker.
SHOP_WORKER_ALERT_SECONDS = float(os.environ.get("SHOP_WORKER_ALERT_SECONDS", "300"))
# Where a verified webhook's event is applied. "request": before the answer, so a 2xx means
# applied and a failure is a 500 that Stripe retries. "worker": the delivery is kept and its
# processing queued in one transaction and answered at once (202); the worker applies it and
# retries a failure itself, for up to SHOP_WEBHOOK_RETRY_HOURS (Stripe's own retry period).
SHOP_WEBHOOK_PROCESSING = os.environ.get("SHOP_WEBHOOK_PROCESSING", "request").strip().lower()
SHOP_WEBHOOK_RETRY_HOURS = float(os.environ.get("SHOP_WEBHOOK_RETRY_HOURS", "72"))
SHOP_WEBHOOK_RETRY_FIRST_SECONDS = 10.0
SHOP_WEBHOOK_RETRY_MAX_SECONDS = 3600.0
# reconcile_payments in the background every so many minutes; 0 = off (run it from cron).
SHOP_RECONCILE_EVERY_MINUTES = float(os.environ.get("SHOP_RECONCILE_EVERY_MINUTES", "10"))

# --- Email ------------------------------------------------------------------------------------
EMAIL_HOST = os.environ.get("EMAIL_HOST", "").strip()
if EMAIL_HOST:
    EMAIL_BACKEND = "django.core.mail.backends.smtp.EmailBackend"
    EMAIL_PORT = int(os.environ.get("EMAIL_PORT") or "587")
    EMAIL_HOST_USER = os.environ.get("EMAIL_HOST_USER", "")
    EMAIL_HOST_PASSWORD = os.environ.get("EMAIL_HOST_PASSWORD", "")
    # STARTTLS unless switched off: a password never crosses the network in clear.
    EMAIL_USE_TLS = env_bool("EMAIL_USE_TLS", True)
else:
    # Development: messages are printed by the worker.
    EMAIL_BACKEND = "django.core.mail.backends.console.EmailBackend"
# A send never holds a worker for long; a failed one is retried later.
EMAIL_TIMEOUT = 20
DEFAULT_FROM_EMAIL = (
    os.environ.get("DEFAULT_FROM_EMAIL", "").strip() or "Corner Shop <shop@localhost>"
)
SERVER_EMAIL = DEFAULT_FROM_EMAIL
# Who hears about new orders and orders needing review; empty = nobody.
SHOP_OWNER_EMAIL = os.environ.get("SHOP_OWNER_EMAIL", "").strip()
# Links in emails are absolute: the address customers reach the shop at.
SHOP_BASE_URL = (os.environ.get("SHOP_BASE_URL", "").strip() or "http://127.0.0.1:8000").rstrip("/")

# A failed email is tried again after 1 minute, then twice as long each time up to an hour,
# and marked failed (visible in the admin) once it has been failing this long.
SHOP_EMAIL_RETRY_FIRST_SECONDS = 60.0
SHOP_EMAIL_RETRY_MAX_SECONDS = 3600.0
SHOP_EMAIL_RETRY_HOURS = float(os.environ.get("SHOP_EMAIL_RETRY_HOURS", "24"))

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {"plain": {"format": "%(asctime)s %(levelname)s %(name)s %(message)s"}},
    "handlers": {"console": {"class": "logging.StreamHandler", "formatter": "plain"}},
    "root": {"handlers": ["console"], "level": "WARNING"},
    "loggers": {
        "shop": {
            "handlers": ["console"],
            "level": os.environ.get("SHOP_LOG_LEVEL", "INFO"),
            "propagate": False,
        },
        "stripe": {"level": "WARNING"},
        "django_tasks": {"handlers": ["console"], "level": "INFO", "propagate": False},
        "django_tasks_db": {"handlers": ["console"], "level": "INFO", "propagate": False},
    },
}
CSRF_FAILURE_VIEW = "shop.web.errorviews.csrf_failure"
