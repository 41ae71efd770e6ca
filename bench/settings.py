"""The shop's own settings, plus the bench's URLconf and a temporary STATIC_ROOT."""

import os
from pathlib import Path

from config.settings import *  # noqa: F403

ROOT_URLCONF = "bench.urls"

if os.environ.get("BENCH_STATIC_ROOT"):
    # bench.run collects into a temporary directory rather than the project's staticfiles/,
    # and serves what a deployment that ran collectstatic serves: hashed, compressed files
    # from the manifest. (config.settings chose the storage from its own STATIC_ROOT.)
    STATIC_ROOT = Path(os.environ["BENCH_STATIC_ROOT"])
    if not DEBUG:  # noqa: F405
        STORAGES["staticfiles"] = {  # noqa: F405
            "BACKEND": "whitenoise.storage.CompressedManifestStaticFilesStorage"
        }
        WHITENOISE_USE_FINDERS = False
