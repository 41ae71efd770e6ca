"""The fake's HTTP responses: Stripe-shaped JSON (errors included) and HTML pages."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from devtools.fakestripe.errors import ApiError


@dataclass
class Response:
    status: int
    body: bytes
    headers: dict[str, str] = field(default_factory=dict)
    store: bool = True  # whether an idempotency key may replay it


def json_response(status: int, payload: dict[str, Any], *, store: bool = True) -> Response:
    body = json.dumps(payload, indent=2).encode("utf-8")
    return Response(status, body, {"Content-Type": "application/json"}, store=store)


def error_response(error: ApiError) -> Response:
    """The error as Stripe answers it; replayable under an idempotency key once executed."""
    return json_response(error.status, error.body(), store=error.executed)


def html_response(status: int, page: str, headers: dict[str, str] | None = None) -> Response:
    all_headers = {"Content-Type": "text/html; charset=utf-8", **(headers or {})}
    return Response(status, page.encode("utf-8"), all_headers)
