"""Deploy checks (`manage.py check --deploy`) for what would make a production shop unsafe."""

from typing import Any
from urllib.parse import urlsplit

from django.conf import settings
from django.core.checks import CheckMessage, Error, Tags, Warning, register
from django.http.request import validate_host


@register(Tags.security, deploy=True)
def payments_check(**kwargs: Any) -> list[Error | Warning]:
    if settings.STRIPE_SECRET_KEY:
        if not settings.STRIPE_WEBHOOK_SECRETS:
            return [
                Error(
                    "STRIPE_WEBHOOK_SECRET is not set: every webhook is refused, so payments "
                    "are confirmed only by the success page and reconcile_payments.",
                    id="shop.E002",
                )
            ]
        return []
    if not settings.SHOP_DEMO_PAYMENTS:
        return [
            Error(
                "STRIPE_SECRET_KEY is not set and demo payments were not asked for.",
                hint="Set STRIPE_SECRET_KEY, or SHOP_DEMO_PAYMENTS=true for a demo.",
                id="shop.E001",
            )
        ]
    return [
        Warning(
            "Demo payments are on (SHOP_DEMO_PAYMENTS): anyone can mark an order paid without "
            "paying. For demos and load tests only.",
            id="shop.W001",
        )
    ]


@register(Tags.security, deploy=True)
def shared_cache_check(**kwargs: Any) -> list[Warning]:
    backend = settings.CACHES["default"]["BACKEND"]
    if backend.endswith("LocMemCache"):
        return [
            Warning(
                "No shared cache (REDIS_URL is empty): rate limits and refused-webhook counts "
                "are kept per worker process, so with N workers a client gets N times the limit.",
                hint="Set REDIS_URL when running more than one worker or server.",
                id="shop.W002",
            )
        ]
    return []


@register(deploy=True)
def emails_deploy_check(app_configs: Any = None, **kwargs: Any) -> list[CheckMessage]:
    problems: list[CheckMessage] = []
    if not settings.EMAIL_HOST:
        problems.append(
            Warning(
                "EMAIL_HOST is not set: confirmations would be printed on the worker's console "
                "instead of sent.",
                hint="Set EMAIL_HOST (and EMAIL_PORT, EMAIL_HOST_USER, EMAIL_HOST_PASSWORD).",
                id="shop.W003",
            )
        )
    host = urlsplit(settings.SHOP_BASE_URL).hostname or ""
    if not validate_host(host, settings.ALLOWED_HOSTS):
        problems.append(
            Warning(
                f"SHOP_BASE_URL ({settings.SHOP_BASE_URL}) is not on one of DJANGO_ALLOWED_HOSTS: "
                "the links in emails would not lead to this shop.",
                hint="Set SHOP_BASE_URL to the shop's public address, e.g. https://shop.example.com.",
                id="shop.W004",
            )
        )
    if not settings.SHOP_OWNER_EMAIL:
        problems.append(
            Warning(
                "SHOP_OWNER_EMAIL is not set: nobody is told about new orders or orders that "
                "need review.",
                id="shop.W005",
            )
        )
    return problems


@register(Tags.database)
def database_features_check(databases: Any = None, **kwargs: Any) -> list[Error]:
    """The webhook's statements (shop.payments.statements) need INSERT ... RETURNING, which
    SQLite has from 3.35 (Django itself accepts older ones); PostgreSQL always has it."""
    from django.db import connection

    if databases is None or "default" not in databases:
        return []
    if connection.vendor == "sqlite" and not connection.features.can_return_columns_from_insert:
        return [
            Error(
                "SQLite 3.35 or newer is needed (INSERT ... RETURNING); this Python's sqlite3 "
                "module links an older one.",
                hint="Use a newer Python or system SQLite, or PostgreSQL (DATABASE_URL).",
                id="shop.E003",
            )
        ]
    return []


WEBHOOK_PROCESSING = ("request", "worker")


@register()
def webhook_processing_check(**kwargs: Any) -> list[Error]:
    if settings.SHOP_WEBHOOK_PROCESSING not in WEBHOOK_PROCESSING:
        return [
            Error(
                f"SHOP_WEBHOOK_PROCESSING is {settings.SHOP_WEBHOOK_PROCESSING!r}: webhooks "
                "would be applied nowhere.",
                hint=f"Set it to one of {', '.join(WEBHOOK_PROCESSING)}, or leave it unset "
                "(request).",
                id="shop.E004",
            )
        ]
    return []


@register()
def worker_alert_check(**kwargs: Any) -> list[Warning]:
    # A live worker writes its heartbeat once a housekeeping round (plus the round's own time):
    # an alert window of two rounds or less would report it missing between two heartbeats.
    if settings.SHOP_WORKER_ALERT_SECONDS <= 2 * settings.SHOP_WORKER_HOUSEKEEPING_SECONDS:
        return [
            Warning(
                f"SHOP_WORKER_ALERT_SECONDS ({settings.SHOP_WORKER_ALERT_SECONDS:g}) is not more "
                "than two housekeeping rounds (SHOP_WORKER_HOUSEKEEPING_SECONDS, "
                f"{settings.SHOP_WORKER_HOUSEKEEPING_SECONDS:g}): /healthz/worker would report "
                "running workers as missing between their heartbeats.",
                hint="Raise SHOP_WORKER_ALERT_SECONDS (300 by default) or lower the other.",
                id="shop.W006",
            )
        ]
    return []
