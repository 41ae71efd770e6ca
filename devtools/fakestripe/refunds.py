"""Refunds: the parameters Stripe takes to create and list them, and their objects (lists of
disputes take the same filters).

The state (which refunds exist) lives in ``FakeStripe``; this module checks what a request may
ask for and builds what Stripe would answer.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from typing import Any, cast

from devtools.fakestripe.errors import ApiError, invalid
from devtools.fakestripe.forms import Params
from devtools.fakestripe.objects import Fixtures, Json, now, random_id
from devtools.fakestripe.params import int_param, metadata_param, reject_unknown

REASONS = frozenset({"duplicate", "fraudulent", "requested_by_customer"})
STATUSES = frozenset({"pending", "requires_action", "succeeded", "failed", "canceled"})
# Refunds that count against what a charge can still give back.
COUNTED = frozenset({"pending", "requires_action", "succeeded"})
_CREATE_PARAMS = frozenset(
    {"payment_intent", "charge", "amount", "reason", "metadata", "expand", "instructions_email"}
)
_LIST_PARAMS = frozenset(
    {"payment_intent", "charge", "created", "limit", "starting_after", "ending_before", "expand"}
)
_CREATED_OPERATORS = frozenset({"gt", "gte", "lt", "lte"})


@dataclass(frozen=True)
class CreateRefund:
    payment_intent: str | None
    charge: str | None
    amount: int | None
    reason: str | None
    metadata: dict[str, str]


@dataclass(frozen=True)
class ListRefunds:
    payment_intent: str | None
    charge: str | None
    created: dict[str, int]
    limit: int
    starting_after: str | None


def parse_create(params: Params) -> CreateRefund:
    reject_unknown(params, _CREATE_PARAMS)
    payment_intent, charge = params.get("payment_intent"), params.get("charge")
    if not payment_intent and not charge:
        raise invalid("One of `charge` or `payment_intent` is required.", param="payment_intent")
    reason = params.get("reason")
    if reason is not None and reason not in REASONS:
        raise invalid(
            f"Invalid reason: must be one of {', '.join(sorted(REASONS))}", param="reason"
        )
    amount = params.get("amount")
    return CreateRefund(
        payment_intent=_string(payment_intent, "payment_intent"),
        charge=_string(charge, "charge"),
        amount=None if amount is None else int_param(amount, "amount", minimum=1),
        reason=reason,
        metadata=metadata_param(params),
    )


def parse_list(params: Params) -> ListRefunds:
    reject_unknown(params, _LIST_PARAMS)
    created = params.get("created") or {}
    if not isinstance(created, dict) or set(created) - _CREATED_OPERATORS:
        raise invalid("Invalid created filter.", param="created")
    limit = params.get("limit")
    number = 10 if limit is None else int_param(limit, "limit", minimum=1)
    if number > 100:
        raise invalid("This value must be less than or equal to 100.", param="limit")
    return ListRefunds(
        payment_intent=_string(params.get("payment_intent"), "payment_intent"),
        charge=_string(params.get("charge"), "charge"),
        created={
            op: int_param(value, f"created[{op}]", minimum=0) for op, value in created.items()
        },
        limit=number,
        starting_after=_string(params.get("starting_after"), "starting_after"),
    )


def refund_object(
    fixtures: Fixtures,
    *,
    charge: str,
    payment_intent: str,
    amount: int,
    currency: str,
    status: str,
    reason: str | None = None,
    metadata: dict[str, str] | None = None,
) -> Json:
    refund: Json = copy.deepcopy(fixtures["refund"])
    refund.update(
        id=random_id("re_"),
        amount=amount,
        charge=charge,
        currency=currency,
        payment_intent=payment_intent,
        created=now(),
        status=status,
        reason=reason,
        metadata=dict(metadata or {}),
        failure_reason="lost_or_stolen_card" if status == "failed" else None,
    )
    return refund


def matches(refund: Json, query: ListRefunds) -> bool:
    if query.payment_intent and refund["payment_intent"] != query.payment_intent:
        return False
    if query.charge and refund["charge"] != query.charge:
        return False
    created = int(refund["created"])
    bounds = {
        "gt": lambda v: created > v,
        "gte": lambda v: created >= v,
        "lt": lambda v: created < v,
        "lte": lambda v: created <= v,
    }
    return all(bounds[op](value) for op, value in query.created.items())


def page(refunds: list[Json], query: ListRefunds, *, url: str = "/v1/refunds") -> Json:
    """Newest first, as Stripe lists; ``starting_after`` continues after that object."""
    ordered = sorted(refunds, key=lambda r: (r["created"], r["_seq"]), reverse=True)
    chosen = [r for r in ordered if matches(r, query)]
    if query.starting_after:
        ids = [r["id"] for r in chosen]
        if query.starting_after not in ids:
            raise ApiError(
                400,
                "invalid_request_error",
                f"No such object: '{query.starting_after}'",
                code="resource_missing",
                param="starting_after",
            )
        chosen = chosen[ids.index(query.starting_after) + 1 :]
    data = [public(r) for r in chosen[: query.limit]]
    return {
        "object": "list",
        "data": data,
        "has_more": len(chosen) > query.limit,
        "url": url,
    }


def public(refund: Json) -> Json:
    """The refund as the API shows it, without the fake's own bookkeeping."""
    return cast(Json, {k: copy.deepcopy(v) for k, v in refund.items() if not k.startswith("_")})


def _string(value: Any, param: str) -> str | None:
    if value is None:
        return None
    if not isinstance(value, str) or not value:
        raise invalid(f"Invalid string: {value!r}", param=param)
    return value
