"""The owner's overview: its figures on a known data set, who may see it, and its settings."""

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _settings_with(**env):
    clean = {
        k: v for k, v in os.environ.items() if not k.startswith(("DJANGO_", "STRIPE_", "SHOP_"))
    }
    return subprocess.run(
        [
            sys.executable,
            "-c",
            "import django; django.setup(); from django.conf import settings; "
            "print(settings.SHOP_TIME_ZONE)",
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        env={**clean, "DJANGO_SETTINGS_MODULE": "config.settings", "DJANGO_DEBUG": "true", **env},
    )


def test_shop_time_zone_defaults_to_utc_and_takes_an_iana_name():
    assert _settings_with().stdout.strip() == "UTC"
    assert _settings_with(SHOP_TIME_ZONE="Europe/Berlin").stdout.strip() == "Europe/Berlin"


def test_an_unknown_shop_time_zone_stops_the_shop_naming_the_variable():
    for bad in ("Mars/Olympus", "../../etc/passwd"):
        result = _settings_with(SHOP_TIME_ZONE=bad)

        assert result.returncode != 0, bad
        assert "ImproperlyConfigured" in result.stderr, bad
        assert f"SHOP_TIME_ZONE={bad!r} is not a time zone" in result.stderr, bad
