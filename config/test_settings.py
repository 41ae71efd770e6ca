"""Settings for the test suite: production settings with safe, fast test values."""

import os
import tempfile

os.environ.setdefault("DJANGO_DEBUG", "false")
os.environ.setdefault(
    "DJANGO_SECRET_KEY", "test-only-secret-key-0123456789-abcdefghijklmnopqrstuvwxyz"
)
os.environ.setdefault("DJANGO_SECURE_SSL_REDIRECT", "false")
os.environ.setdefault("DJANGO_ADMIN_URL", "admin/")
# Tests choose demo or the fake Stripe per test; without a key, demo payments are asked for.
os.environ.setdefault("SHOP_DEMO_PAYMENTS", "true")

from config.settings import *  # noqa: F403
from config.settings import DATABASES, STORAGES

ALLOWED_HOSTS = ["testserver", "localhost", "127.0.0.1"]
PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
STORAGES["staticfiles"]["BACKEND"] = "django.contrib.staticfiles.storage.StaticFilesStorage"
STATIC_ROOT = None  # type: ignore[assignment]

# Tests never talk to real Stripe: without the fake server, calls go to a closed local port.
STRIPE_SECRET_KEY = ""
STRIPE_WEBHOOK_SECRETS = ["whsec_test_secret"]
STRIPE_API_BASE = "http://127.0.0.1:9"
STRIPE_TIMEOUT_SECONDS = 2.0
CHECKOUT_ORIGIN = STRIPE_API_BASE
if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":
    # A file, not memory: concurrency tests and app-server processes share it.
    DATABASES["default"]["TEST"] = {
        "NAME": os.path.join(tempfile.gettempdir(), f"shop-test-{os.getpid()}.sqlite3")
    }

# Rate limits are tested on purpose (tests/test_security.py); elsewhere they would only interfere.
RATELIMIT_ENABLE = False
AXES_ENABLED = False

# Emails: the owner is told, and links point at the test client's host.
SHOP_OWNER_EMAIL = "owner@example.com"
SHOP_BASE_URL = "http://testserver"
