"""Property-based fuzzing of what strangers can send us: cart forms, checkout posts, webhooks.

pytest-django rolls the database back once per test, not once per Hypothesis example, so every
example runs inside `rolled_back()` (a savepoint) as a new browser (`browser()`): examples never
see each other's orders, sessions or events.
"""

import codecs
import copy
import functools
import io
import json
import re
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any
from urllib.parse import urlencode

import hypothesis
import pytest
from django.conf import settings as django_settings
from django.contrib.sessions.models import Session
from django.core.exceptions import BadRequest, SuspiciousOperation
from django.core.signals import request_finished, request_started
from django.db import close_old_connections, transaction
from django.http import QueryDict
from django.http.multipartparser import MultiPartParserError
from django.test import Client
from django.utils.http import parse_header_parameters
from hypothesis import HealthCheck, Phase, given
from hypothesis import strategies as st

from devtools.fakestripe import FakeStripe
from shop.catalogue.models import Product
from shop.errors import ShopError
from shop.orders.cart import cart_parse
from shop.orders.limits import MAX_QUANTITY
from shop.orders.models import Order, OrderLine, OrderStatus, OrderTransition
from shop.payments.models import WebhookDelivery, WebhookEvent
from shop.web.views import CHECKOUT_MAX_BYTES
from tests.conftest import WEBHOOK_URL, buy, cart_form, last_order

pytestmark = pytest.mark.django_db

CHECKOUT_URL = "/checkout/"
PREFIX = "quantity-"
SESSION_EVENTS = (
    "checkout.session.completed",
    "checkout.session.async_payment_succeeded",
    "checkout.session.async_payment_failed",
    "checkout.session.expired",
)


def fuzz(max_examples: int) -> hypothesis.settings:
    return hypothesis.settings(
        max_examples=max_examples,
        deadline=None,
        database=None,  # no example database to keep in step: failures print a reproduce blob
        print_blob=True,
        phases=[Phase.explicit, Phase.reuse, Phase.generate, Phase.target, Phase.shrink],
        suppress_health_check=[
            HealthCheck.function_scoped_fixture,
            HealthCheck.too_slow,
            HealthCheck.data_too_large,
            HealthCheck.large_base_example,
        ],
    )


@pytest.fixture(autouse=True)
def no_rate_limits(settings: Any) -> None:
    if hasattr(settings, "RATELIMIT_ENABLE"):
        settings.RATELIMIT_ENABLE = False


@contextmanager
def rolled_back() -> Iterator[None]:
    """Undo everything one example wrote, whether it passed or failed."""
    with transaction.atomic():
        yield
        transaction.set_rollback(True)


def browser(client: Client) -> Client:
    """The test client as a browser that never visited: no session, no CSRF cookie.

    Reused rather than rebuilt because building a handler rescans every static file
    (WhiteNoise with finders), which costs more than the request itself.
    """
    client.cookies.clear()
    return client


# --- the reference model: what a form said -----------------------------------------------------

VALID_QUANTITY_TEXT = {"", *map(str, range(MAX_QUANTITY + 1)), *(f"0{n}" for n in range(10))}


class SentCart:
    """What a form said: `cart`, or None if no storefront form could have sent these fields.

    Written independently of `cart_parse` (quantities by table look-up, product ids as text) so
    the two do not share bugs. `canonical` is False when a field names a known product in a way
    the storefront never does ("quantity-01"): refusing such a cart is as right as reading it.
    Two fields for one product ("quantity-1" and "quantity-01") are as ambiguous as one field
    sent twice, so no cart at all.
    """

    def __init__(self, pairs: list[tuple[str, str]], product_ids: set[int]) -> None:
        self.canonical = True
        self.cart = self._read(pairs, product_ids)

    def _read(self, pairs: list[tuple[str, str]], product_ids: set[int]) -> dict[int, int] | None:
        fields: dict[int, list[str]] = {}
        for name, value in pairs:
            if not name.startswith(PREFIX):
                continue
            raw_id = name.removeprefix(PREFIX)
            if not re.fullmatch(r"[0-9]+", raw_id):
                return None
            product = next((pk for pk in product_ids if raw_id.lstrip("0") == str(pk)), None)
            if product is None:
                return None
            self.canonical = self.canonical and raw_id == str(product)
            fields.setdefault(product, []).append(value)
        cart = {}
        for product, values in fields.items():
            if len(values) != 1 or values[0].strip() not in VALID_QUANTITY_TEXT:
                return None
            cart[product] = int(values[0].strip() or "0")
        return cart if any(cart.values()) else None

    def allows(self, parsed: dict[int, int] | None) -> bool:
        return parsed == self.cart or (parsed is None and not self.canonical)

    def __repr__(self) -> str:
        return f"SentCart({self.cart}{'' if self.canonical else ', not canonical'})"


# --- strategies: cart fields --------------------------------------------------------------------

ARABIC_INDIC = str.maketrans("0123456789", "٠١٢٣٤٥٦٧٨٩")
FULLWIDTH = str.maketrans("0123456789", "０１２３４５６７８９")
WHITESPACE = [" ", "\t", "\n", "\r\n", "\x0b", "\x1c", "\u00a0", "\u2003", "\u3000", "\u200b"]
ODD_QUANTITIES = [
    *("", " ", "0", "00", "000", "007", "09", "100", "999", "-0", "-1", "+1", "1.0", "1.", ".5"),
    *("1e1", "0x1", "0b1", "1_0", "٣", "５", "²", "𝟗", "Ⅻ", "NaN", "inf", "true", "None"),
    *("[]", "1,2", "1 2", "\x00", "1\x00", "%31", "&", "="),
]
HUGE_DIGITS = st.integers(4290, 4400)  # int() refuses more than 4300 digits (CVE-2020-10735)
LATIN1 = st.characters(max_codepoint=255)


# Cached: building a strategy per example (validation included) costs more than running it.
@functools.cache
def field_names(product_ids: tuple[int, ...]) -> st.SearchStrategy[str]:
    known = st.sampled_from(product_ids)
    decorated = st.tuples(
        known, st.sampled_from([*WHITESPACE, "+", "-", ".0", "\x00", "[]", "%00"]), st.booleans()
    ).map(lambda t: f"{PREFIX}{t[1]}{t[0]}" if t[2] else f"{PREFIX}{t[0]}{t[1]}")
    return st.one_of(
        known.map(lambda pk: f"{PREFIX}{pk}"),
        known.map(lambda pk: f"{PREFIX}0{pk}"),
        known.map(lambda pk: PREFIX + str(pk).translate(ARABIC_INDIC)),
        known.map(lambda pk: PREFIX + str(pk).translate(FULLWIDTH)),
        known.map(lambda pk: f"Quantity-{pk}"),
        decorated,
        st.integers().map(lambda n: f"{PREFIX}{n}"),
        HUGE_DIGITS.map(lambda n: PREFIX + "1" * n),
        st.text(max_size=12).map(lambda s: PREFIX + s),
        st.sampled_from(["", PREFIX, "quantity", "csrfmiddlewaretoken", "price", "unit_amount-1"]),
        st.text(max_size=12),
    )


@functools.cache
def quantity_values() -> st.SearchStrategy[str]:
    return st.one_of(
        st.integers(0, MAX_QUANTITY).map(str),
        st.integers().map(str),
        st.tuples(st.integers(0, MAX_QUANTITY), st.sampled_from(WHITESPACE)).map(
            lambda t: f"{t[1]}{t[0]}{t[1]}"
        ),
        st.integers(0, MAX_QUANTITY).map(lambda n: str(n).translate(ARABIC_INDIC)),
        st.sampled_from(ODD_QUANTITIES),
        st.text(max_size=8),
        HUGE_DIGITS.map(lambda n: "9" * n),
    )


@st.composite
def cart_pairs(draw: st.DrawFn, product_ids: list[int]) -> list[tuple[str, str]]:
    """Form fields: either noise, or a real cart with a few fields added, changed or dropped."""
    names, values = field_names(tuple(product_ids)), quantity_values()
    if draw(st.booleans()):
        return draw(st.lists(st.tuples(names, values), max_size=8))
    order = draw(st.permutations(product_ids))
    pairs = [(f"{PREFIX}{pk}", str(draw(st.integers(0, MAX_QUANTITY)))) for pk in order]
    for _ in range(draw(st.integers(0, 3))):
        action = draw(st.sampled_from(["add", "rename", "revalue", "drop", "repeat"]))
        if action == "add":
            pairs.insert(draw(st.integers(0, len(pairs))), (draw(names), draw(values)))
        elif pairs and action == "repeat":
            pairs.append(draw(st.sampled_from(pairs)))
        elif pairs:
            i = draw(st.integers(0, len(pairs) - 1))
            if action == "drop":
                del pairs[i]
            elif action == "rename":
                pairs[i] = (draw(names), pairs[i][1])
            else:
                pairs[i] = (pairs[i][0], draw(values))
    return pairs


def query_dict(pairs: list[tuple[str, str]], *, over_the_wire: bool) -> QueryDict:
    if over_the_wire:
        return QueryDict(urlencode(pairs))
    data = QueryDict(mutable=True)
    for name, value in pairs:
        data.appendlist(name, value)
    return data


# --- 1. the cart parser ---------------------------------------------------------------------------

# A few fixed catalogues (ids that are prefixes of each other included), so the strategies are
# built once: rebuilding them for every example made generation the slowest part of the test.
CATALOGUES = [[1, 2, 3], [7], [1, 12, 120, 1200]]
PARSER_INPUT = st.one_of(
    *(st.tuples(st.just(set(ids)), cart_pairs(ids), st.booleans()) for ids in CATALOGUES)
)


@fuzz(1000)
@given(PARSER_INPUT)
def test_cart_parse_returns_a_valid_cart_or_raises_shop_error(parser_input):
    product_ids, pairs, over_the_wire = parser_input
    data = query_dict(pairs, over_the_wire=over_the_wire)

    try:
        cart = cart_parse(data, product_ids=product_ids)
    except ShopError:
        return

    assert type(cart) is dict
    assert set(cart) <= product_ids
    assert all(type(q) is int and 0 <= q <= MAX_QUANTITY for q in cart.values())
    assert any(q > 0 for q in cart.values())


@fuzz(1000)
@given(PARSER_INPUT)
def test_cart_parse_agrees_with_what_the_form_said(parser_input):
    product_ids, pairs, over_the_wire = parser_input
    data = query_dict(pairs, over_the_wire=over_the_wire)

    try:
        cart = cart_parse(data, product_ids=product_ids)
    except ShopError:
        cart = None

    sent = SentCart(pairs, product_ids)
    assert sent.allows(cart), sent


@fuzz(500)
@given(data=st.data())
def test_cart_parse_reads_any_valid_cart_exactly(products, data):
    quantities = data.draw(
        st.lists(
            st.integers(0, MAX_QUANTITY), min_size=len(products), max_size=len(products)
        ).filter(any)
    )
    fields = list(cart_form(products, *quantities).items())
    fields = data.draw(st.permutations(fields))
    extra = data.draw(st.sampled_from([[], [("csrfmiddlewaretoken", "x" * 64)], [("note", "")]]))

    cart = cart_parse(QueryDict(urlencode(fields + extra)), product_ids={p.pk for p in products})

    assert cart == {p.pk: q for p, q in zip(products, quantities, strict=True)}


# --- 2. the checkout view -----------------------------------------------------------------------

CHARSETS = ["utf-8", "UTF-8", "latin-1", "utf-16", "ascii", "bogus", "rot13", "base64", "hex"]
ODD_CONTENT_TYPES = [
    "",
    "text/plain",
    "application/json",
    "application/octet-stream",
    "APPLICATION/X-WWW-FORM-URLENCODED",
    "application/x-www-form-urlencoded;",
    "multipart/form-data",
    "multipart/form-data; boundary=",
    "multipart/mixed; boundary=x",
    "text/html; charset=rot13",
]


def with_charset(content_type: str) -> st.SearchStrategy[str]:
    return st.one_of(
        st.just(content_type),
        st.sampled_from(CHARSETS).map(lambda charset: f"{content_type}; charset={charset}"),
    )


def names_a_non_text_codec(content_type: str) -> bool:
    """True for a charset like rot13: a codec Python knows, but not one that decodes bytes."""
    charset = parse_header_parameters(content_type)[1].get("charset", "")
    try:
        codecs.lookup(charset)
        b"0".decode(charset)  # empty bytes would not even look the codec up
    except LookupError as exc:
        return "not a text encoding" in str(exc)
    except ValueError:
        pass
    return False


def multipart_body(pairs: list[tuple[str, str]], boundary: str, *, as_files: bool) -> bytes:
    filename = '; filename="cart.txt"' if as_files else ""
    disposition = 'Content-Disposition: form-data; name="{}"' + filename
    parts = [
        f"--{boundary}\r\n{disposition.format(name)}\r\n\r\n{value}\r\n" for name, value in pairs
    ]
    return ("".join(parts) + f"--{boundary}--\r\n").encode()


@st.composite
def checkout_posts(draw: st.DrawFn, product_ids: list[int]) -> dict[str, Any]:
    """Keyword arguments for `Client.generic("POST", ...)`: a form body and its headers."""
    kind = draw(st.sampled_from(["form"] * 4 + ["multipart"] * 2 + ["raw", "many", "oversized"]))
    pairs = draw(cart_pairs(product_ids))
    if kind == "form":
        body = urlencode(pairs).encode()
        content_type = draw(with_charset("application/x-www-form-urlencoded"))
    elif kind == "multipart":
        boundary = draw(st.sampled_from(["----b0undary", "x", "a" * 70, "é"]))
        body = multipart_body(pairs, boundary, as_files=draw(st.booleans()))
        if draw(st.booleans()):
            body = body[: draw(st.integers(0, len(body)))]
        content_type = draw(with_charset(f"multipart/form-data; boundary={boundary}"))
    elif kind == "raw":
        body = draw(
            st.one_of(
                st.binary(max_size=300),
                st.text(st.sampled_from("quantity-0123456789=&%+;# \x00éÿ٣"), max_size=80).map(
                    str.encode
                ),
            )
        )
        content_type = draw(
            st.one_of(
                with_charset("application/x-www-form-urlencoded"),
                st.sampled_from(ODD_CONTENT_TYPES),
                st.text(LATIN1, max_size=40),
            )
        )
    elif kind == "many":
        noise = draw(
            st.lists(st.tuples(st.text(max_size=3), st.just("1")), min_size=45, max_size=60)
        )
        body = urlencode(pairs + noise).encode()
        content_type = "application/x-www-form-urlencoded"
    else:
        padding = draw(st.integers(CHECKOUT_MAX_BYTES - 300, CHECKOUT_MAX_BYTES + 300))
        body = urlencode([*pairs, ("pad", "x" * padding)]).encode()
        content_type = "application/x-www-form-urlencoded"

    extra: dict[str, str] = {}
    if draw(st.integers(0, 9)) == 0:
        # Only lengths up to the real one: a longer one makes the test client itself fail.
        odd = [v for v in ["", "abc", "-1", " 12 ", "1e3", "0x10", "٣"] if _fits(v, len(body))]
        extra["CONTENT_LENGTH"] = draw(
            st.one_of(st.sampled_from(odd), st.integers(0, len(body)).map(str))
        )
    query = draw(
        st.one_of(
            st.just(""),
            st.text(LATIN1, max_size=20),
            st.sampled_from(["before=1", "before=99999999999999999999", "notice=cancelled"]),
        )
    )
    if names_a_non_text_codec(content_type):
        # Django fails on these while building the request, before any shop code runs, so the
        # test client cannot show a fix: test_server_answers_a_non_text_charset_with_4xx does.
        query = ""
    path = f"{CHECKOUT_URL}?{query}" if query else CHECKOUT_URL
    return {"path": path, "data": body, "content_type": content_type, **extra}


def _fits(declared: str, length: int) -> bool:
    """False for a Content-Length that Django reads as more than the body (" 12 " and "٣" are
    numbers to int()): the test client, unlike a server, cannot send a short body."""
    try:
        return int(declared) <= length
    except ValueError:
        return True


def posted_pairs(request: Any) -> list[tuple[str, str]]:
    """The form fields the view was given (none when Django refused to parse the body)."""
    try:
        return [(name, value) for name, values in request.POST.lists() for value in values]
    except (BadRequest, SuspiciousOperation, MultiPartParserError, LookupError):
        # LookupError: a non-text charset such as rot13, which the shop refuses before parsing.
        return []


def row_counts() -> tuple[int, int, int]:
    return Order.objects.count(), OrderLine.objects.count(), Session.objects.count()


def check_checkout_post(
    client: Client, post: dict[str, Any], products: list[Product], fake: Any = None
) -> None:
    prices = {p.pk: p.unit_amount for p in products}
    with rolled_back():
        before = row_counts()
        last_id = Order.objects.order_by("-id").values_list("id", flat=True).first() or 0
        stripe_calls = len(fake.requests) if fake else 0

        response = browser(client).generic("POST", **post)

        try:
            declared = int(post.get("CONTENT_LENGTH", len(post["data"])) or 0)
        except ValueError:
            assert response.status_code == 400
            assert row_counts() == before
            return
        if declared > CHECKOUT_MAX_BYTES:
            # 413 from the size limit, or 400 when the charset is refused even earlier.
            assert response.status_code in (400, 413)
            assert row_counts() == before
            return
        sent = SentCart(posted_pairs(response.wsgi_request), set(prices))
        hypothesis.note(f"status {response.status_code}, the form said {sent}")
        if response.status_code != 303:
            assert response.status_code == 400
            assert row_counts() == before, "a rejected cart stored something"
            if fake:
                assert len(fake.requests) == stripe_calls, "a rejected cart reached Stripe"
            assert sent.allows(None), "a cart a real form sends was refused"
            return

        assert sent.cart is not None, "a cart no form could send was accepted"
        cart = sent.cart
        (order,) = Order.objects.filter(id__gt=last_id)
        assert response["Location"] == order.checkout_url
        assert order.status == OrderStatus.PENDING
        assert {line.product_id: line.quantity for line in order.lines.all()} == {
            pk: q for pk, q in cart.items() if q
        }
        assert order.amount_total == sum(prices[pk] * q for pk, q in cart.items())
        if fake:
            session = fake.sessions[order.checkout_session_id]
            assert response["Location"] == session["url"]
            assert session["amount_total"] == order.amount_total


@fuzz(300)
@given(data=st.data())
def test_checkout_answers_any_form_with_400_413_or_303_demo(client, products, demo, data):
    post = data.draw(checkout_posts([p.pk for p in products]))

    check_checkout_post(client, post, products)


@fuzz(60)
@given(data=st.data())
def test_checkout_answers_any_form_with_400_413_or_303_stripe(client, products, fake_stripe, data):
    post = data.draw(checkout_posts([p.pk for p in products]))

    check_checkout_post(client, post, products, fake_stripe)


@pytest.mark.parametrize("path", [CHECKOUT_URL, WEBHOOK_URL])
@pytest.mark.parametrize("charset", ["rot13", "hex"])
def test_server_answers_a_non_text_charset_with_4xx(path, charset):
    """Through the real WSGI entry point, as gunicorn calls it: an exception here is a 500."""
    from config.wsgi import application

    environ = {
        "REQUEST_METHOD": "POST",
        "PATH_INFO": path,
        "QUERY_STRING": "notice=cancelled",
        "CONTENT_TYPE": f"text/plain; charset={charset}",
        "CONTENT_LENGTH": "0",
        "SERVER_NAME": "testserver",
        "SERVER_PORT": "80",
        "SERVER_PROTOCOL": "HTTP/1.1",
        "REMOTE_ADDR": "127.0.0.1",
        "wsgi.input": io.BytesIO(b""),
        "wsgi.errors": io.StringIO(),
        "wsgi.url_scheme": "http",
    }
    statuses: list[str] = []
    # As the test client does: closing "old" connections would end the test's transaction.
    request_started.disconnect(close_old_connections)
    request_finished.disconnect(close_old_connections)
    try:
        response = application(
            environ, lambda status, headers, exc_info=None: statuses.append(status)
        )
        if hasattr(response, "close"):
            response.close()
    except Exception as exc:
        pytest.fail(f"the server would answer 500: {exc!r}")
    finally:
        request_started.connect(close_old_connections)
        request_finished.connect(close_old_connections)

    assert statuses and statuses[0].startswith("4"), statuses


# --- 3. the Stripe webhook ----------------------------------------------------------------------

JSON_LEAVES = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-(10**20), 10**20),
    st.floats(allow_nan=False, allow_infinity=False),
    st.text(max_size=20),
)
JSON_VALUES = st.recursive(
    JSON_LEAVES,
    lambda children: st.one_of(
        st.lists(children, max_size=4), st.dictionaries(st.text(max_size=8), children, max_size=4)
    ),
    max_leaves=12,
)
DEEP = "__replaced_by_deeply_nested_arrays__"


class PaidSession:
    """A pending order whose Stripe session the customer just paid, and Stripe's genuine event."""

    def __init__(self, order: Order, event: dict[str, Any]) -> None:
        self.order, self.event = order, event

    def __repr__(self) -> str:
        return f"PaidSession({self.order.reference}, {self.order.checkout_session_id})"


class Fuzzed:
    """A mutated event and its body; failure reports show the list of mutations only."""

    def __init__(self, event: Any, body: bytes, changes: list[str], depth: int = 0) -> None:
        self.event, self.body, self.changes, self.depth = event, body, changes, depth

    def __repr__(self) -> str:
        return f"Fuzzed({'; '.join(self.changes) or 'unchanged'})"


@pytest.fixture
def paid_session(client: Client, products: list[Product], fake_stripe: FakeStripe) -> PaidSession:
    buy(client, products, 1, 2, 0)
    order = last_order()
    assert order.status == OrderStatus.PENDING and order.checkout_session_id
    fake_stripe.complete(order.checkout_session_id)
    event = fake_stripe.session_event("checkout.session.completed", order.checkout_session_id)
    return PaidSession(order, event)


def post_webhook(client: Client, body: bytes, content_type: str, **headers: str) -> Any:
    return browser(client).generic(
        "POST", WEBHOOK_URL, data=body, content_type=content_type, **headers
    )


def nested(depth: int) -> bytes:
    return b"[" * depth + b"]" * depth


def short(value: Any, limit: int = 60) -> str:
    text = repr(value)
    if len(text) <= limit:
        return text
    size = len(value) if isinstance(value, bytes | str) else len(text)
    return f"{text[: limit - 20]}...{text[-20:]} ({size} long)"


@st.composite
def mutated_events(draw: st.DrawFn, paid: PaidSession) -> Fuzzed:
    """Stripe's event for the paid session with some of its fields changed."""
    event = copy.deepcopy(paid.event)
    obj = event["data"]["object"]
    order = paid.order
    sid, ref, amount = order.checkout_session_id or "", order.reference, order.amount_total
    changes: list[str] = []
    alternatives: dict[str, list[Any]] = {
        "id": [sid, "cs_test_other", f"{sid} ", sid.upper(), "", 1, [sid], None],
        "status": ["complete", "open", "expired", "Complete", "complete ", None, 1],
        "payment_status": ["paid", "unpaid", "no_payment_required", "PAID", True, None],
        "amount_total": [
            *(amount, amount + 1, amount - 1, 0, -amount, 10**20, str(amount), f"{amount}.0"),
            *(float(amount), amount + 0.5, True, False, None, [amount], {"value": amount}),
        ],
        "currency": ["usd", "USD", "eur", "", "usd\x00", None, 840],
        "client_reference_id": [ref, f"{ref}x", ref.upper(), "", None, 0, [ref], {"id": ref}],
        "metadata": [
            *({"order_id": ref}, {"order_id": "ord_other"}, {}, {"order_id": ""}, None),
            *({"order_id": 1}, {"order_id": [ref]}, [], [ref], "order_id", 0, 1, True),
        ],
        "payment_intent": [
            *("pi_fuzz", {"id": "pi_fuzz", "status": "succeeded"}, {"id": 5}, {}, 7, None),
            *({"id": "pi_fuzz", "status": "requires_payment_method"}, [], "pi_" + "x" * 300),
        ],
    }
    for key, choices in alternatives.items():
        action = draw(st.sampled_from(["keep"] * 6 + ["choose", "choose", "random", "delete"]))
        if action == "delete":
            obj.pop(key, None)
            changes.append(f"del object.{key}")
        elif action != "keep":
            value = draw(st.sampled_from(choices) if action == "choose" else JSON_VALUES)
            obj[key] = value
            changes.append(f"object.{key}={short(value)}")
    for key, value in draw(st.dictionaries(st.text(max_size=10), JSON_VALUES, max_size=2)).items():
        obj[key] = value
        changes.append(f"object[{key!r}]={short(value)}")

    event_types = st.sampled_from([*SESSION_EVENTS, "charge.refunded", "payment_intent.created"])
    same_type, same_id = st.just(event["type"]), st.just(event["id"])
    new_type = draw(st.one_of(same_type, same_type, event_types, JSON_VALUES))
    new_id = draw(st.one_of(same_id, same_id, same_id, st.text(max_size=300), JSON_VALUES))
    for key, value in (("type", new_type), ("id", new_id)):
        if value != event[key]:
            event[key] = value
            changes.append(f"{key}={short(value)}")
    envelope = draw(st.sampled_from(["ok"] * 8 + ["object", "data", "no data", "not an object"]))
    if envelope == "object":
        event["data"]["object"] = draw(JSON_VALUES)
        changes.append(f"data.object={short(event['data']['object'])}")
    elif envelope == "data":
        event["data"] = draw(JSON_VALUES)
        changes.append(f"data={short(event['data'])}")
    elif envelope == "no data":
        del event["data"]
        changes.append("del data")
    elif envelope == "not an object":
        event = draw(st.one_of(JSON_VALUES, st.lists(st.just(event), min_size=1, max_size=2)))
        changes.append(f"event={short(event)}")

    depth = draw(st.one_of(st.just(0), st.just(0), st.just(0), st.integers(1, 3000)))
    if depth and isinstance(event, dict):
        event["nested"] = DEEP
        changes.append(f"nested=[[[...{depth} levels")
    body = json.dumps(event, allow_nan=False).encode()
    if depth and isinstance(event, dict):
        body = body.replace(json.dumps(DEEP).encode(), nested(depth), 1)
    return Fuzzed(event, body, changes, depth)


class Delivery:
    def __init__(self, body: bytes, content_type: str, headers: dict[str, str]) -> None:
        self.body, self.content_type, self.headers = body, content_type, headers

    def __repr__(self) -> str:
        return f"Delivery({short(self.body, 100)}, {self.content_type!r}, {self.headers!r})"


@st.composite
def unsigned_deliveries(draw: st.DrawFn, paid: PaidSession, fake: FakeStripe) -> Delivery:
    """A webhook delivery without a valid signature: bodies and headers anyone can send."""
    genuine = json.dumps(paid.event).encode()
    limit = django_settings.STRIPE_WEBHOOK_MAX_BYTES
    body = draw(
        st.one_of(
            st.just(genuine),
            mutated_events(paid).map(lambda fuzzed: fuzzed.body),
            st.binary(max_size=512),
            JSON_VALUES.map(lambda value: json.dumps(value).encode()),
            st.integers(1, 20_000).map(nested),
            st.integers(limit - 20, limit + 20).map(lambda n: genuine.ljust(n)),
            st.sampled_from([b"", b"{}", b"null", b"\xff\xfe{}", genuine + b"\x00", b"\x00"]),
        )
    )
    other_body = b"x" + body
    wrong_secret = st.text(min_size=1, max_size=40).filter(lambda s: s != fake.webhook_secret)
    signature = draw(
        st.one_of(
            st.none(),
            st.just(""),
            st.text(LATIN1, max_size=80),
            wrong_secret.map(lambda secret: fake.sign(body, secret=secret)),
            st.integers(301, 10**8).map(
                lambda age: fake.sign(body, timestamp=int(time.time()) - age)
            ),
            st.just(fake.sign(other_body)),
            st.just(fake.sign(body).replace("v1=", "v0=")),
            st.tuples(st.text(LATIN1, min_size=1, max_size=3), st.booleans()).map(
                lambda t: fake.sign(other_body) + t[0] if t[1] else t[0] + fake.sign(other_body)
            ),
            st.tuples(st.integers(), st.text(LATIN1, min_size=1, max_size=70)).map(
                lambda t: f"t={t[0]},v1={t[1]}"
            ),
            st.lists(
                st.tuples(
                    st.sampled_from(["t", "v1", "v0", "", " t", "T"]),
                    st.one_of(st.text(LATIN1, max_size=70), st.integers().map(str)),
                ),
                max_size=4,
            ).map(lambda items: ",".join(f"{key}={value}" for key, value in items)),
        )
    )
    content_type = draw(
        st.one_of(
            st.sampled_from(["application/json"] * 4 + ODD_CONTENT_TYPES),
            with_charset("application/json"),
            st.text(LATIN1, max_size=30),
        )
    )
    headers: dict[str, str] = {}
    if signature is not None:
        headers["HTTP_STRIPE_SIGNATURE"] = signature
    if draw(st.integers(0, 9)) == 0:
        headers["CONTENT_LENGTH"] = draw(
            st.one_of(st.sampled_from(["", "abc", "-1"]), st.integers(0, len(body)).map(str))
        )
    return Delivery(body, content_type, headers)


@fuzz(300)
@given(data=st.data())
def test_webhook_without_valid_signature_never_changes_anything(
    client, fake_stripe, paid_session, data
):
    delivery = data.draw(unsigned_deliveries(paid_session, fake_stripe))
    order = paid_session.order

    with rolled_back():
        response = post_webhook(client, delivery.body, delivery.content_type, **delivery.headers)

        assert response.status_code in (400, 413, 415)
        order.refresh_from_db()
        assert order.status == OrderStatus.PENDING
        assert not order.needs_review and not order.paid_at and not order.payment_intent_id
        assert WebhookEvent.objects.count() == 0
        assert OrderTransition.objects.count() == 0
        assert not WebhookDelivery.objects.filter(signature_valid=True).exists()


def genuinely_paid(event: Any, order: Order) -> bool:
    """True only for a session event saying this order's session was paid in full."""
    if not isinstance(event, dict) or event.get("type") not in SESSION_EVENTS:
        return False
    if not isinstance(event.get("id"), str) or not event["id"]:
        return False
    obj = event["data"].get("object") if isinstance(event.get("data"), dict) else None
    if not isinstance(obj, dict):
        return False
    # Metadata that is not an object names no order; the session id and reference still must.
    metadata = obj.get("metadata")
    order_ids = [metadata.get("order_id")] if isinstance(metadata, dict) else []
    names = [name for name in (obj.get("client_reference_id"), *order_ids) if name]
    amount = obj.get("amount_total")
    return (
        bool(names)
        and all(name == order.reference for name in names)
        and obj.get("id") == order.checkout_session_id
        and obj.get("status") == "complete"
        # Stripe's rule for fulfilment is "not unpaid"; the amount check still applies.
        and obj.get("payment_status") in ("paid", "no_payment_required")
        and type(amount) is int
        and amount == order.amount_total
        and obj.get("currency") == order.currency
    )


@fuzz(300)
@given(data=st.data())
def test_signed_webhook_never_fails_and_pays_only_a_genuine_paid_session(
    client, fake_stripe, paid_session, data
):
    fuzzed = data.draw(mutated_events(paid_session))
    order = paid_session.order

    with rolled_back():
        response = post_webhook(
            client,
            fuzzed.body,
            "application/json",
            HTTP_STRIPE_SIGNATURE=fake_stripe.sign(fuzzed.body),
        )

        errors = list(WebhookEvent.objects.exclude(error="").values_list("error", flat=True))
        assert response.status_code in (200, 400), (response.content, errors)
        order.refresh_from_db()
        paid = order.status == OrderStatus.PAID
        hypothesis.event(f"{response.status_code} {order.status}")
        assert not paid or genuinely_paid(fuzzed.event, order)
        # ...and a genuine paid completion does pay, whatever harmless noise came with it (a
        # body Stripe could never send, too deep or with NUL characters, is refused instead).
        trusted_body = fuzzed.depth == 0 and b"\\u0000" not in fuzzed.body
        if trusted_body and genuinely_paid(fuzzed.event, order):
            assert paid, fuzzed
        assert OrderTransition.objects.filter(to_status=OrderStatus.PAID).count() == int(paid)


@st.composite
def mutated_refunds(draw: st.DrawFn, paid: PaidSession, refund_event: dict[str, Any]) -> Fuzzed:
    """A signed charge.refunded event for the paid order's payment, with mutations."""
    event = copy.deepcopy(refund_event)
    charge = event["data"]["object"]
    amount = paid.order.amount_total
    intent = charge["payment_intent"]
    changes: list[str] = []
    alternatives = {
        "amount_refunded": [
            *(amount, amount + 1, amount - 1, 1, 0, -amount, 10**20, str(amount), float(amount)),
            *(True, None, [amount], {"value": amount}),
        ],
        "payment_intent": [
            intent,
            "pi_other",
            "",
            None,
            7,
            {"id": intent},
            [intent],
            intent.upper(),
        ],
    }
    for key, choices in alternatives.items():
        action = draw(st.sampled_from(["keep", "keep", "choose", "choose", "random", "delete"]))
        if action == "delete":
            charge.pop(key, None)
            changes.append(f"del object.{key}")
        elif action != "keep":
            value = draw(st.sampled_from(choices) if action == "choose" else JSON_VALUES)
            charge[key] = value
            changes.append(f"object.{key}={short(value)}")
    new_type = draw(st.sampled_from(["charge.refunded"] * 4 + [*SESSION_EVENTS, "charge.updated"]))
    if new_type != event["type"]:
        event["type"] = new_type
        changes.append(f"type={new_type}")
    return Fuzzed(event, json.dumps(event, allow_nan=False).encode(), changes)


def genuinely_refunded(event: dict[str, Any], order: Order) -> bool:
    """True only for a charge.refunded event of this order's payment that gives all of it back:
    by its refunded total, or by the succeeded refunds it lists (for the same payment)."""
    charge = event["data"]["object"]
    if (
        event["type"] != "charge.refunded"
        or charge.get("payment_intent") != order.payment_intent_id
    ):
        return False
    refunded = charge.get("amount_refunded")
    # Stripe never reports more than a charge's amount, nor more than eight digits.
    total = refunded if type(refunded) is int and 0 <= refunded <= 99_999_999 else 0
    listed = sum(
        refund["amount"]
        for refund in charge["refunds"]["data"]
        if refund["status"] == "succeeded"
        and refund["payment_intent"] in (None, charge["payment_intent"])
    )
    return max(total, listed) >= order.amount_total


@fuzz(150)
@given(data=st.data())
def test_signed_refund_never_fails_and_refunds_only_a_genuine_full_refund(
    client, fake_stripe, paid_session, data
):
    order = paid_session.order
    refund_event = fake_stripe.charge_refunded(order.checkout_session_id)
    fuzzed = data.draw(mutated_refunds(paid_session, refund_event))

    with rolled_back():
        genuine = json.dumps(paid_session.event).encode()
        paid = post_webhook(
            client, genuine, "application/json", HTTP_STRIPE_SIGNATURE=fake_stripe.sign(genuine)
        )
        assert paid.status_code == 200
        order.refresh_from_db()
        assert order.status == OrderStatus.PAID

        response = post_webhook(
            client,
            fuzzed.body,
            "application/json",
            HTTP_STRIPE_SIGNATURE=fake_stripe.sign(fuzzed.body),
        )

        errors = list(WebhookEvent.objects.exclude(error="").values_list("error", flat=True))
        # NUL characters Stripe never sends are refused (400); anything else is settled (200).
        expected = 400 if b"\\u0000" in fuzzed.body else 200
        assert response.status_code == expected, (response.content, errors)
        order.refresh_from_db()
        refunded = order.status == OrderStatus.REFUNDED
        hypothesis.event(f"{'refunded' if refunded else order.status}")
        # A refused body applies nothing, even one that would be a genuine refund without its
        # NUL characters (a refunds list giving all of it back beside a NUL-keyed field).
        assert refunded == (expected == 200 and genuinely_refunded(fuzzed.event, order)), fuzzed


def test_the_genuine_event_used_for_fuzzing_pays_the_order(client, fake_stripe, paid_session):
    body = json.dumps(paid_session.event).encode()

    response = post_webhook(
        client, body, "application/json", HTTP_STRIPE_SIGNATURE=fake_stripe.sign(body)
    )

    order = paid_session.order
    order.refresh_from_db()
    assert response.status_code == 200
    assert order.status == OrderStatus.PAID
    assert genuinely_paid(paid_session.event, order)
