"""Stripe events: the envelope around an object, the ``Stripe-Signature`` header, and delivery
of a signed event to a webhook endpoint over HTTP."""

from __future__ import annotations

import copy
import hashlib
import hmac
import json
from typing import cast

import requests

from devtools.fakestripe.objects import Fixtures, Json, now, random_id

API_VERSION = "2026-10-28.endive"  # what stripe==16.1.0 pins


def envelope(
    fixtures: Fixtures,
    type: str,
    obj: Json,
    *,
    event_id: str | None = None,
    created: int | None = None,
) -> Json:
    """An event of ``type`` carrying a copy of ``obj``, shaped like Stripe's example event."""
    event = copy.deepcopy(fixtures["event"])
    event.update(
        id=event_id or random_id("evt_"),
        object="event",
        type=type,
        created=now() if created is None else created,
        livemode=False,
        api_version=API_VERSION,
        pending_webhooks=1,
        request={"id": None, "idempotency_key": None},
        data={"object": copy.deepcopy(obj)},
    )
    return cast(Json, event)


def sign(payload: bytes | str, *, secret: str, timestamp: int | None = None) -> str:
    """The ``Stripe-Signature`` header for ``payload``, signed now unless ``timestamp`` given."""
    raw = payload.encode("utf-8") if isinstance(payload, str) else payload
    signed_at = now() if timestamp is None else timestamp
    key = secret.encode("utf-8")
    digest = hmac.new(key, f"{signed_at}.".encode() + raw, hashlib.sha256).hexdigest()
    return f"t={signed_at},v1={digest}"


def deliver(event: Json, url: str, *, secret: str) -> requests.Response:
    """POST the event to ``url`` as Stripe does, signed with ``secret``."""
    payload = json.dumps(event, indent=2).encode("utf-8")
    headers = {
        "Content-Type": "application/json; charset=utf-8",
        "Stripe-Signature": sign(payload, secret=secret),
        "User-Agent": "Stripe/1.0 (+https://stripe.com/docs/webhooks)",
    }
    return requests.post(url, data=payload, headers=headers, timeout=10)
