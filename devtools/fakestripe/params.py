"""Parameter checks for ``POST /v1/checkout/sessions`` (payment mode), failing as Stripe does.

``parse_create_params`` turns the decoded form into a ``CreateRequest`` or raises the
``ApiError`` Stripe would answer with; the retrieve and expire endpoints take only ``expand``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any, cast
from urllib.parse import urlsplit

from devtools.fakestripe.errors import ApiError, invalid
from devtools.fakestripe.forms import Params

MAX_AMOUNT = 99_999_999
MIN_AMOUNT = 50
MAX_LINE_ITEMS = 100
DEFAULT_LIFETIME = 24 * 3600
MIN_LIFETIME = 30 * 60
EXPIRES_AT_SLACK = 60

_CREATE_PARAMS = frozenset(
    {
        "mode",
        "line_items",
        "success_url",
        "cancel_url",
        "client_reference_id",
        "metadata",
        "expires_at",
        "customer_email",
        "payment_method_types",
        "currency",
        "locale",
        "submit_type",
        "expand",
    }
)
_LINE_ITEM_PARAMS = frozenset({"price_data", "quantity"})
_PRICE_DATA_PARAMS = frozenset({"currency", "unit_amount", "product_data", "tax_behavior"})
_PRODUCT_DATA_PARAMS = frozenset({"name", "description", "images", "metadata", "tax_code"})
_READ_PARAMS = frozenset({"expand"})

_INT_RE = re.compile(r"-?\d+")
_CURRENCY_RE = re.compile(r"[a-z]{3}")


@dataclass(frozen=True)
class LineItem:
    name: str
    quantity: int
    unit_amount: int
    currency: str

    @property
    def amount(self) -> int:
        return self.quantity * self.unit_amount


@dataclass(frozen=True)
class CreateRequest:
    line_items: list[LineItem]
    currency: str
    amount_total: int
    success_url: str
    cancel_url: str
    expires_at: int
    client_reference_id: str | None
    metadata: dict[str, str]
    optional: Params  # customer_email, payment_method_types, locale, submit_type as given


def parse_create_params(params: Params, now: int) -> CreateRequest:
    """Validate ``POST /v1/checkout/sessions`` parameters the way Stripe does (payment mode)."""
    reject_unknown(params, _CREATE_PARAMS)
    mode = _require(params, "mode", "mode")
    if mode != "payment":
        raise invalid(
            f"Invalid mode: {mode}. This fake only supports `payment`.",
            param="mode",
            code="parameter_invalid_string",
        )
    items = _parse_line_items(params)
    currency = items[0].currency
    if "currency" in params and params["currency"] != currency:
        raise invalid("currency must match the line items' currency.", param="currency")
    total = sum(item.amount for item in items)
    _check_amount(total, currency)
    return CreateRequest(
        line_items=items,
        currency=currency,
        amount_total=total,
        success_url=_url_param(params, "success_url"),
        cancel_url=_url_param(params, "cancel_url"),
        expires_at=_expires_at(params, now),
        client_reference_id=_client_reference_id(params),
        metadata=metadata_param(params),
        optional=_optional_fields(params),
    )


def check_read_params(params: Params) -> None:
    """Retrieving or expiring a session takes nothing but ``expand``."""
    reject_unknown(params, _READ_PARAMS)


def reject_unknown(params: Params, allowed: frozenset[str], prefix: str = "") -> None:
    for key in params:
        if key not in allowed:
            name = f"{prefix}[{key}]" if prefix else key
            raise invalid(
                f"Received unknown parameter: {name}", param=name, code="parameter_unknown"
            )


# --- line items --------------------------------------------------------------------------------


def _parse_line_items(params: Params) -> list[LineItem]:
    raw = _require(params, "line_items", "line_items")
    if not isinstance(raw, list):
        raise invalid("Invalid array", param="line_items")
    if len(raw) > MAX_LINE_ITEMS:
        raise invalid(
            f"You may only specify up to {MAX_LINE_ITEMS} line items in payment mode.",
            param="line_items",
        )
    items = [_parse_line_item(index, item) for index, item in enumerate(raw)]
    currencies = sorted({item.currency for item in items})
    if len(currencies) > 1:
        raise invalid(
            f"All line items must use the same currency; got {', '.join(currencies)}.",
            param="line_items",
        )
    return items


def _parse_line_item(index: int, item: Any) -> LineItem:
    prefix = f"line_items[{index}]"
    if not isinstance(item, dict):
        raise invalid(f"Invalid object: {prefix}", param=prefix)
    reject_unknown(item, _LINE_ITEM_PARAMS, prefix)
    quantity_param = f"{prefix}[quantity]"
    quantity = int_param(_require(item, "quantity", quantity_param), quantity_param, minimum=1)
    price_data = _require_dict(item, "price_data", f"{prefix}[price_data]")
    price_prefix = f"{prefix}[price_data]"
    reject_unknown(price_data, _PRICE_DATA_PARAMS, price_prefix)
    currency = _currency(
        _require(price_data, "currency", f"{price_prefix}[currency]"), f"{price_prefix}[currency]"
    )
    unit_amount = int_param(
        _require(price_data, "unit_amount", f"{price_prefix}[unit_amount]"),
        f"{price_prefix}[unit_amount]",
        minimum=0,
    )
    product_prefix = f"{price_prefix}[product_data]"
    product_data = _require_dict(price_data, "product_data", product_prefix)
    reject_unknown(product_data, _PRODUCT_DATA_PARAMS, product_prefix)
    name = _require(product_data, "name", f"{product_prefix}[name]")
    return LineItem(name=str(name), quantity=quantity, unit_amount=unit_amount, currency=currency)


def _check_amount(total: int, currency: str) -> None:
    if total > MAX_AMOUNT:
        raise invalid(
            f"The Checkout Session's total amount must be no more than {MAX_AMOUNT}.",
            param="line_items",
            code="amount_too_large",
        )
    if total < MIN_AMOUNT:
        raise invalid(
            f"The Checkout Session's total amount due must add up to at least "
            f"{MIN_AMOUNT} {currency}.",
            param="line_items",
            code="amount_too_small",
        )


# --- the session's other parameters ------------------------------------------------------------


def _url_param(params: Params, key: str) -> str:
    value = _require(params, key, key)
    parts = urlsplit(value) if isinstance(value, str) else None
    if parts is None or parts.scheme not in ("http", "https") or not parts.netloc:
        raise invalid("Not a valid URL", param=key, code="url_invalid")
    return cast(str, value)


def _expires_at(params: Params, now: int) -> int:
    if "expires_at" not in params:
        return now + DEFAULT_LIFETIME
    expires_at = int_param(params["expires_at"], "expires_at", minimum=0)
    if expires_at < now + MIN_LIFETIME - EXPIRES_AT_SLACK:
        raise invalid(
            "The `expires_at` timestamp must be at least 30 minutes from Checkout Session "
            "creation.",
            param="expires_at",
        )
    if expires_at > now + DEFAULT_LIFETIME + EXPIRES_AT_SLACK:
        raise invalid(
            "The `expires_at` timestamp must be less than 24 hours from Checkout Session creation.",
            param="expires_at",
        )
    return expires_at


def _client_reference_id(params: Params) -> str | None:
    value = params.get("client_reference_id")
    if value is not None and (not isinstance(value, str) or len(value) > 200):
        raise invalid(
            "client_reference_id must be a string of at most 200 characters.",
            param="client_reference_id",
        )
    return value or None


def metadata_param(params: Params) -> dict[str, str]:
    value = params.get("metadata", {})
    if value == "":
        return {}
    if not isinstance(value, dict) or not all(isinstance(v, str) for v in value.values()):
        raise invalid("Invalid hash", param="metadata")
    return cast(dict[str, str], value)


def _optional_fields(params: Params) -> Params:
    if "payment_method_types" in params and not isinstance(params["payment_method_types"], list):
        raise invalid("Invalid array", param="payment_method_types")
    keys = ("customer_email", "payment_method_types", "locale", "submit_type")
    return {key: params[key] for key in keys if key in params}


# --- single values -----------------------------------------------------------------------------


def _require(params: Params, key: str, param: str) -> Any:
    if key not in params:
        raise _missing(param)
    value = params[key]
    if value == "":
        raise invalid(
            f"You passed an empty string for '{param}'. We assume empty values are an attempt "
            f"to unset a parameter; however '{param}' cannot be unset. You should remove "
            f"'{param}' from your request or supply a non-empty value.",
            param=param,
            code="parameter_invalid_empty",
        )
    return value


def _missing(param: str) -> ApiError:
    return invalid(f"Missing required param: {param}.", param=param, code="parameter_missing")


def _require_dict(params: Params, key: str, param: str) -> Params:
    value = _require(params, key, param)
    if not isinstance(value, dict):
        raise invalid(f"Invalid object: {param}", param=param)
    return value


def int_param(value: Any, param: str, *, minimum: int) -> int:
    if not isinstance(value, str) or not _INT_RE.fullmatch(value):
        raise invalid(f"Invalid integer: {value}", param=param, code="parameter_invalid_integer")
    number = int(value)
    if number < minimum:
        raise invalid(
            f"This value must be greater than or equal to {minimum}.",
            param=param,
            code="parameter_invalid_integer",
        )
    return number


def _currency(value: Any, param: str) -> str:
    if not isinstance(value, str) or not _CURRENCY_RE.fullmatch(value):
        raise invalid(f"Invalid currency: {value}.", param=param, code="parameter_invalid_string")
    return value
