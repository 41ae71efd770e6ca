"""Deployment checks (`manage.py check --deploy`) for what the shop's emails need."""

from typing import Any
from urllib.parse import urlsplit

from django.conf import settings
from django.core.checks import CheckMessage, Warning
from django.http.request import validate_host


def emails_deploy_check(app_configs: Any = None, **kwargs: Any) -> list[CheckMessage]:
    problems: list[CheckMessage] = []
    if not settings.EMAIL_HOST:
        problems.append(
            Warning(
                "EMAIL_HOST is not set: confirmations would be printed on the worker's console "
                "instead of sent.",
                hint="Set EMAIL_HOST (and EMAIL_PORT, EMAIL_HOST_USER, EMAIL_HOST_PASSWORD).",
                id="shop.W001",
            )
        )
    host = urlsplit(settings.SHOP_BASE_URL).hostname or ""
    if not validate_host(host, settings.ALLOWED_HOSTS):
        problems.append(
            Warning(
                f"SHOP_BASE_URL ({settings.SHOP_BASE_URL}) is not on one of DJANGO_ALLOWED_HOSTS: "
                "the links in emails would not lead to this shop.",
                hint="Set SHOP_BASE_URL to the shop's public address, e.g. https://shop.example.com.",
                id="shop.W002",
            )
        )
    if not settings.SHOP_OWNER_EMAIL:
        problems.append(
            Warning(
                "SHOP_OWNER_EMAIL is not set: nobody is told about new orders or orders that "
                "need review.",
                id="shop.W003",
            )
        )
    return problems
