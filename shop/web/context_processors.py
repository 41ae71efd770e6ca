from typing import Any

from django.contrib.staticfiles.storage import staticfiles_storage
from django.http import HttpRequest

from shop.payments import demo_mode


def shop(request: HttpRequest) -> dict[str, Any]:
    return {
        "demo_mode": demo_mode(),
        # Changes with every collectstatic that changes a file: cached markup holding static
        # URLs is keyed on it, so a deploy never serves links to files of the one before.
        "static_version": getattr(staticfiles_storage, "manifest_hash", ""),
    }
