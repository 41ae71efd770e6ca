"""Settings for the test suite: production settings with safe, fast test values."""

import os

os.environ.setdefault("DJANGO_DEBUG", "false")
os.environ.setdefault("DJANGO_SECRET_KEY", "test-only-secret-key-0123456789-abcdefghijklmnopqrstuvwxyz")
os.environ.setdefault("DJANGO_SECURE_SSL_REDIRECT", "false")
os.environ.setdefault("DJANGO_ADMIN_URL", "admin/")

from config.settings import *  # noqa: E402,F403

ALLOWED_HOSTS = ["testserver", "localhost", "127.0.0.1"]
PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
STORAGES["staticfiles"]["BACKEND"] = "django.contrib.staticfiles.storage.StaticFilesStorage"  # noqa: F405

# Tests never talk to real Stripe: without the fake server, calls go to a closed local port.
STRIPE_SECRET_KEY = ""
STRIPE_WEBHOOK_SECRETS = ["whsec_test_secret"]
STRIPE_API_BASE = "http://127.0.0.1:9"
STRIPE_TIMEOUT_SECONDS = 2.0
CHECKOUT_ORIGIN = STRIPE_API_BASE
if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":  # noqa: F405
    # A file, not memory: concurrency tests and app-server processes share it.
    DATABASES["default"]["TEST"] = {"NAME": f"/tmp/shop-test-{os.getpid()}.sqlite3"}  # noqa: F405
STATIC_ROOT = None
WHITENOISE_USE_FINDERS = True
