"""Stripe objects as the fake returns them: Stripe's own example shapes, filled in.

The shapes come from ``stripe_objects.json`` beside this file; each builder starts from a deep
copy of one and sets what the fake knows.
"""

from __future__ import annotations

import copy
import json
import secrets
import string
import time
from pathlib import Path
from typing import Any, cast

from devtools.fakestripe.params import CreateRequest

Json = dict[str, Any]
Fixtures = dict[str, Any]

_ALNUM = string.ascii_letters + string.digits


def load_fixtures() -> Fixtures:
    """Stripe's example objects, keyed by object type ("checkout.session", "event", ...)."""
    path = Path(__file__).with_name("stripe_objects.json")
    objects = json.loads(path.read_text(encoding="utf-8"))
    return {name: shape for name, shape in objects.items() if not name.startswith("_")}


def random_id(prefix: str, length: int = 24) -> str:
    return prefix + "".join(secrets.choice(_ALNUM) for _ in range(length))


def now() -> int:
    return int(time.time())


def checkout_session(
    fixtures: Fixtures, request: CreateRequest, *, session_id: str, created: int, url: str
) -> Json:
    """A new open, unpaid session for a validated create request; ``url`` is its payment page."""
    session: Json = copy.deepcopy(fixtures["checkout.session"])
    session.update(
        id=session_id,
        object="checkout.session",
        mode="payment",
        status="open",
        payment_status="unpaid",
        amount_subtotal=request.amount_total,
        amount_total=request.amount_total,
        currency=request.currency,
        client_reference_id=request.client_reference_id,
        metadata=request.metadata,
        success_url=request.success_url,
        cancel_url=request.cancel_url,
        created=created,
        expires_at=request.expires_at,
        livemode=False,
        payment_intent=None,
        url=url,
        # The fixture's example values for these describe a different session.
        currency_conversion=None,
        shipping_cost=None,
        shipping_address_collection=None,
        collected_information=None,
        customer_details=None,
        total_details={"amount_discount": 0, "amount_shipping": 0, "amount_tax": 0},
        **request.optional,
    )
    return session


def customer_details(fixtures: Fixtures, email: str | None) -> Json:
    """A paying customer's details: the example customer, with the session's email if any."""
    details = copy.deepcopy(fixtures["checkout.session"]["customer_details"])
    if email:
        details["email"] = email
    return cast(Json, details)


def payment_intent(fixtures: Fixtures, session: Json, *, status: str | None = None) -> Json:
    """A completed session's payment intent: succeeded if it is paid, else processing, unless
    ``status`` says otherwise."""
    intent = copy.deepcopy(fixtures["payment_intent"])
    default = "succeeded" if session["payment_status"] == "paid" else "processing"
    intent.update(
        id=session["payment_intent"],
        amount=session["amount_total"],
        amount_received=session["amount_total"] if default == "succeeded" else 0,
        currency=session["currency"],
        status=default if status is None else status,
        client_secret=None,
        last_payment_error=None,
        canceled_at=None,
        metadata={},
    )
    return cast(Json, intent)


def refunded_charge(
    fixtures: Fixtures,
    *,
    charge_id: str,
    amount: int,
    currency: str,
    payment_intent: str,
    refunded: int,
    refunds: list[Json],
) -> Json:
    """A succeeded charge of ``amount`` of which ``refunded`` is refunded, by ``refunds``."""
    charge = copy.deepcopy(fixtures["charge"])
    charge.update(
        id=charge_id,
        amount=amount,
        amount_captured=amount,
        amount_refunded=refunded,
        refunded=refunded == amount,
        paid=True,
        captured=True,
        status="succeeded",
        currency=currency,
        payment_intent=payment_intent,
        created=now(),
        description=None,
        shipping=None,
        source=None,
        transfer_data=None,
        refunds={
            "object": "list",
            "data": refunds,
            "has_more": False,
            "url": f"/v1/charges/{charge_id}/refunds",
        },
    )
    return cast(Json, charge)


def dispute(
    fixtures: Fixtures,
    *,
    charge: str,
    payment_intent: str,
    amount: int,
    currency: str,
    reason: str,
    status: str,
    due_by: int,
) -> Json:
    """A chargeback on a charge, with its evidence deadline."""
    opened: Json = copy.deepcopy(fixtures["dispute"])
    opened.update(
        id=random_id("dp_"),
        amount=amount,
        charge=charge,
        currency=currency,
        payment_intent=payment_intent,
        reason=reason,
        status=status,
        created=now(),
    )
    opened["evidence_details"]["due_by"] = due_by
    return opened
