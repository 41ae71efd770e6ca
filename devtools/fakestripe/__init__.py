"""A Stripe-compatible fake API server for tests.

It speaks real HTTP on 127.0.0.1 so the real ``stripe`` SDK (and a real browser, for the
hosted-page stand-in) can talk to it:

    with FakeStripe() as fake:
        client = stripe.StripeClient(fake.api_key, base_addresses={"api": fake.url})

Objects it returns start from the shapes in ``stripe_objects.json`` beside this file.
"""

from __future__ import annotations

import copy
import hmac
import html
import re
import sys
import threading
import traceback
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from typing import Any, cast
from urllib.parse import parse_qsl, unquote

import requests

from devtools.fakestripe import events, objects
from devtools.fakestripe.errors import ApiError
from devtools.fakestripe.faults import Faults
from devtools.fakestripe.forms import Params, decode_form
from devtools.fakestripe.objects import Json, load_fixtures, now, random_id
from devtools.fakestripe.params import (
    CreateRequest,
    LineItem,
    check_read_params,
    parse_create_params,
)
from devtools.fakestripe.responses import (
    Response,
    error_response,
    html_response,
    json_response,
)

SESSION_ID_PLACEHOLDER = "{CHECKOUT_SESSION_ID}"


# --- server plumbing ---------------------------------------------------------------------------


@dataclass
class RecordedRequest:
    method: str
    path: str
    params: Params
    headers: dict[str, str]
    idempotency_key: str | None


@dataclass(frozen=True)
class _StoredResult:
    method: str
    path: str
    params: Params
    status: int
    body: bytes
    request_id: str


class _Server(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, fake: FakeStripe) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.fake = fake

    def handle_error(self, request: Any, client_address: Any) -> None:
        # A client giving up (timeouts, retries) is expected; anything else is a bug worth seeing.
        if not isinstance(sys.exc_info()[1], ConnectionError):
            super().handle_error(request, client_address)


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.0"  # one request per connection: nothing idles past stop()
    server_version = "FakeStripe/1.0"

    def do_GET(self) -> None:
        self._dispatch("GET")

    def do_POST(self) -> None:
        self._dispatch("POST")

    def do_DELETE(self) -> None:
        self._dispatch("DELETE")

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def _dispatch(self, method: str) -> None:
        fake = cast(_Server, self.server).fake
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        headers = {key.lower(): value for key, value in self.headers.items()}
        try:
            response = fake._handle(method, self.path, headers, body)
        except Exception:
            traceback.print_exc()
            error = ApiError(500, "api_error", "FakeStripe crashed; see stderr.")
            response = json_response(500, error.body())
            response.headers["Stripe-Should-Retry"] = "false"
        if response is None:
            self.close_connection = True
            return
        self._write(response)

    def _write(self, response: Response) -> None:
        self.send_response(response.status)
        for name, value in response.headers.items():
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(response.body)))
        self.end_headers()
        self.wfile.write(response.body)


# --- the fake ----------------------------------------------------------------------------------


class FakeStripe:
    """Stripe's Checkout Sessions API, webhooks and a hosted payment page, in process."""

    def __init__(
        self, *, api_key: str = "sk_test_fake", webhook_secret: str = "whsec_test_secret"
    ) -> None:
        self.api_key = api_key
        self.webhook_secret = webhook_secret
        self.url = ""
        self.webhook_url: str | None = None
        self.sessions: dict[str, Json] = {}
        self.requests: list[RecordedRequest] = []
        self.delivery_errors: list[str] = []
        self._fixtures = load_fixtures()
        self._lock = threading.RLock()
        self._faults = Faults(self._lock)
        self._idempotency: dict[str, _StoredResult] = {}
        self._line_items: dict[str, list[LineItem]] = {}
        self._payment_intents: dict[str, str] = {}
        self._intent_statuses: dict[str, str] = {}
        self._charges: dict[str, str] = {}
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None

    # lifecycle

    def start(self) -> FakeStripe:
        if self._server is not None:
            raise RuntimeError("FakeStripe is already running")
        self._server = _Server(self)
        port = self._server.server_address[1]
        self.url = f"http://127.0.0.1:{port}"
        self._thread = threading.Thread(
            target=self._server.serve_forever,
            kwargs={"poll_interval": 0.05},
            name=f"FakeStripe:{port}",
            daemon=True,
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        server, thread = self._server, self._thread
        if server is None:
            return
        self._server = self._thread = None
        self._faults.release_hangs()
        server.shutdown()
        server.server_close()
        if thread is not None:
            thread.join(timeout=5)

    def __enter__(self) -> FakeStripe:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    def reset(self) -> None:
        with self._lock:
            self._faults.clear()
            self.sessions.clear()
            self.requests.clear()
            self.delivery_errors.clear()
            self._idempotency.clear()
            self._line_items.clear()
            self._payment_intents.clear()
            self._intent_statuses.clear()
            self._charges.clear()
            self.webhook_url = None

    def requests_to(self, method: str, path_prefix: str) -> list[RecordedRequest]:
        with self._lock:
            return [
                request
                for request in self.requests
                if request.method == method.upper() and request.path.startswith(path_prefix)
            ]

    # state changes

    def complete(self, session_id: str, *, payment_status: str = "paid") -> Json:
        if payment_status not in ("paid", "unpaid", "no_payment_required"):
            raise ValueError(f"unknown payment_status {payment_status!r}")
        with self._lock:
            session = self._session(session_id)
            if session["status"] != "open":
                raise ValueError(f"{session_id} is {session['status']}, not open")
            session.update(
                status="complete",
                payment_status=payment_status,
                payment_intent=self._payment_intents[session_id],
                customer_details=objects.customer_details(
                    self._fixtures, session.get("customer_email")
                ),
                url=None,
            )
            return copy.deepcopy(session)

    def expire(self, session_id: str) -> Json:
        with self._lock:
            session = self._session(session_id)
            if session["status"] != "open":
                raise ValueError(_not_expirable_message(session["status"]))
            session.update(status="expired", url=None)
            return copy.deepcopy(session)

    def set_session_fields(self, session_id: str, **fields: Any) -> Json:
        with self._lock:
            session = self._session(session_id)
            session.update(copy.deepcopy(fields))
            return copy.deepcopy(session)

    # events and webhooks

    def event(
        self,
        type: str,
        obj: Json,
        *,
        event_id: str | None = None,
        created: int | None = None,
    ) -> Json:
        return events.envelope(self._fixtures, type, obj, event_id=event_id, created=created)

    def session_event(self, type: str, session_id: str, **kw: Any) -> Json:
        with self._lock:
            session = copy.deepcopy(self._session(session_id))
        return self.event(type, session, **kw)

    def charge_refunded(self, session_id: str, *, amount_refunded: int | None = None) -> Json:
        with self._lock:
            session = self._session(session_id)
            payment_intent = session.get("payment_intent")
            if not payment_intent:
                raise ValueError(f"{session_id} has no payment to refund; complete() it first")
            amount = int(session["amount_total"])
            refunded = amount if amount_refunded is None else amount_refunded
            if not 0 < refunded <= amount:
                raise ValueError(f"amount_refunded must be in 1..{amount}, got {refunded}")
            charge_id = self._charges.setdefault(session_id, random_id("ch_"))
            charge = objects.refunded_charge(
                self._fixtures,
                charge_id=charge_id,
                amount=amount,
                currency=session["currency"],
                payment_intent=payment_intent,
                refunded=refunded,
            )
        return self.event("charge.refunded", charge)

    def sign(
        self, payload: bytes | str, *, secret: str | None = None, timestamp: int | None = None
    ) -> str:
        key = secret if secret is not None else self.webhook_secret
        return events.sign(payload, secret=key, timestamp=timestamp)

    def deliver(self, event: Json, url: str, *, secret: str | None = None) -> requests.Response:
        key = secret if secret is not None else self.webhook_secret
        return events.deliver(event, url, secret=key)

    # fault injection

    def fail_next(
        self,
        n: int = 1,
        *,
        status: int = 500,
        error_type: str = "api_error",
        prefix: str = "/v1/",
        should_retry: bool | None = None,
    ) -> None:
        self._faults.fail_next(
            n, status=status, error_type=error_type, prefix=prefix, should_retry=should_retry
        )

    def hang_next(self, n: int = 1, *, seconds: float = 30.0, prefix: str = "/v1/") -> None:
        self._faults.hang_next(n, seconds=seconds, prefix=prefix)

    def drop_next(self, n: int = 1, *, prefix: str = "/v1/") -> None:
        self._faults.drop_next(n, prefix=prefix)

    # internals: state

    def _session(self, session_id: str) -> Json:
        try:
            return self.sessions[session_id]
        except KeyError:
            raise KeyError(f"No such checkout.session: '{session_id}'") from None

    def _create_session(self, request: CreateRequest, created: int) -> Json:
        session_id = random_id("cs_test_")
        session = objects.checkout_session(
            self._fixtures,
            request,
            session_id=session_id,
            created=created,
            url=f"{self.url}/c/pay/{session_id}",
        )
        self.sessions[session_id] = session
        self._line_items[session_id] = list(request.line_items)
        self._payment_intents[session_id] = random_id("pi_")
        return session

    # internals: HTTP

    def _handle(
        self, method: str, raw_path: str, headers: dict[str, str], body: bytes
    ) -> Response | None:
        path, _, query = raw_path.partition("?")
        if path.startswith("/c/"):
            fault = self._faults.take(path)
            return self._faults.apply(fault) if fault else self._handle_page(method, path)
        params, decode_error = _decode_params(body.decode("utf-8", "replace") or query)
        request = RecordedRequest(
            method=method,
            path=path,
            params=params,
            headers=headers,
            idempotency_key=headers.get("idempotency-key"),
        )
        with self._lock:
            self.requests.append(request)
        fault = self._faults.take(path)
        response = self._faults.apply(fault) if fault else self._handle_api(request, decode_error)
        if response is not None:
            response.headers.setdefault("Request-Id", random_id("req_", 14))
        return response

    def _handle_api(self, request: RecordedRequest, decode_error: ApiError | None) -> Response:
        try:
            self._authenticate(request.headers)
            action = self._route(request.method, request.path)
            if decode_error is not None:
                raise decode_error
        except ApiError as error:
            return error_response(error)
        key = request.idempotency_key
        if request.method != "POST" or not key:
            return self._execute(action, request.params)
        with self._lock:  # held across execution so concurrent retries cannot both create
            stored = self._idempotency.get(key)
            if stored is not None:
                return _replay(stored, request, key)
            response = self._execute(action, request.params)
            if response.store:
                self._idempotency[key] = _StoredResult(
                    method=request.method,
                    path=request.path,
                    params=copy.deepcopy(request.params),
                    status=response.status,
                    body=response.body,
                    request_id=response.headers.setdefault("Request-Id", random_id("req_", 14)),
                )
            return response

    def _authenticate(self, headers: dict[str, str]) -> None:
        authorization = headers.get("authorization", "")
        if not authorization.startswith("Bearer ") or not authorization[7:].strip():
            raise ApiError(
                401,
                "authentication_error",
                "You did not provide an API key. You need to provide your API key in the "
                "Authorization header, using Bearer auth (e.g. 'Authorization: Bearer "
                "YOUR_SECRET_KEY').",
            )
        supplied = authorization[7:].strip()
        if not hmac.compare_digest(supplied, self.api_key):
            raise ApiError(
                401, "authentication_error", f"Invalid API Key provided: {_mask(supplied)}"
            )

    def _route(self, method: str, path: str) -> Callable[[Params], Json]:
        routes: list[tuple[str, str, Callable[..., Json]]] = [
            ("POST", r"/v1/checkout/sessions", self._api_create),
            ("GET", r"/v1/checkout/sessions/(?P<session_id>[^/]+)", self._api_retrieve),
            ("POST", r"/v1/checkout/sessions/(?P<session_id>[^/]+)/expire", self._api_expire),
        ]
        for route_method, pattern, handler in routes:
            match = re.fullmatch(pattern, path)
            if match and route_method == method:
                args = {name: unquote(value) for name, value in match.groupdict().items()}
                return partial(handler, **args)
        raise ApiError(
            404,
            "invalid_request_error",
            f"Unrecognized request URL ({method}: {path}). Please see https://stripe.com/docs "
            "or we can help at https://support.stripe.com/.",
        )

    def _execute(self, action: Callable[[Params], Json], params: Params) -> Response:
        try:
            return json_response(200, action(params))
        except ApiError as error:
            return error_response(error)

    def _api_create(self, params: Params) -> Json:
        created = now()
        request = parse_create_params(params, created)
        with self._lock:
            return copy.deepcopy(self._create_session(request, created))

    def _api_retrieve(self, params: Params, *, session_id: str) -> Json:
        check_read_params(params)
        with self._lock:
            session = copy.deepcopy(self._existing_session(session_id))
            expand = params.get("expand") or []
            if "payment_intent" in expand and isinstance(session.get("payment_intent"), str):
                session["payment_intent"] = self._payment_intent_object(session)
            return session

    def fail_payment(self, session_id: str) -> Json:
        """An async payment (bank debit) failed: the session stays complete and unpaid, and its
        payment intent goes back to requires_payment_method."""
        with self._lock:
            session = self._session(session_id)
            if session["status"] != "complete" or session["payment_status"] != "unpaid":
                raise ValueError(f"{session_id} is not awaiting an async payment")
            self._intent_statuses[session["payment_intent"]] = "requires_payment_method"
            return copy.deepcopy(session)

    def _payment_intent_object(self, session: Json) -> Json:
        status = self._intent_statuses.get(session["payment_intent"])
        return objects.payment_intent(self._fixtures, session, status=status)

    def _api_expire(self, params: Params, *, session_id: str) -> Json:
        check_read_params(params)
        with self._lock:
            status = self._existing_session(session_id)["status"]
            if status != "open":
                raise ApiError(
                    400, "invalid_request_error", _not_expirable_message(status), executed=True
                )
            return self.expire(session_id)

    def _existing_session(self, session_id: str) -> Json:
        session = self.sessions.get(session_id)
        if session is None:
            raise ApiError(
                404,
                "invalid_request_error",
                f"No such checkout.session: '{session_id}'",
                code="resource_missing",
                param="session",
                executed=True,
            )
        return session

    # internals: hosted page

    def _handle_page(self, method: str, path: str) -> Response:
        match = re.fullmatch(r"/c/pay/([^/]+)", path)
        with self._lock:
            session = self.sessions.get(unquote(match.group(1))) if match else None
            snapshot = copy.deepcopy(session) if session else None
            items = list(self._line_items.get(snapshot["id"], [])) if snapshot else []
        if snapshot is None:
            return html_response(404, _page('<p id="status">No such Checkout Session.</p>'))
        if method == "GET":
            return html_response(200, _checkout_page(snapshot, items))
        if method != "POST":
            return html_response(405, _page("<p>Method not allowed.</p>"))
        return self._pay(snapshot, items)

    def _pay(self, session: Json, items: list[LineItem]) -> Response:
        try:
            completed = self.complete(session["id"])
        except ValueError:  # already paid or expired, e.g. a double submit
            return html_response(409, _checkout_page(session, items))
        self._deliver_quietly("checkout.session.completed", completed)
        location = completed["success_url"].replace(SESSION_ID_PLACEHOLDER, completed["id"])
        return html_response(303, _page("<p>Redirecting…</p>"), {"Location": location})

    def _deliver_quietly(self, event_type: str, session: Json) -> None:
        url = self.webhook_url
        if url is None:
            return
        try:
            response = self.deliver(self.event(event_type, session), url)
        except requests.RequestException as error:
            self.delivery_errors.append(f"{event_type} to {url}: {error}")
            return
        if not response.ok:
            self.delivery_errors.append(f"{event_type} to {url}: HTTP {response.status_code}")


def _decode_params(raw: str) -> tuple[Params, ApiError | None]:
    try:
        return decode_form(parse_qsl(raw, keep_blank_values=True)), None
    except ApiError as error:
        return {}, error


def _replay(stored: _StoredResult, request: RecordedRequest, key: str) -> Response:
    same = (stored.method, stored.path, stored.params) == (
        request.method,
        request.path,
        request.params,
    )
    if not same:
        error = ApiError(
            400,
            "idempotency_error",
            "Keys for idempotent requests can only be used with the same parameters they were "
            f"first used with. Try using a key other than '{key}' if you meant to execute a "
            "different request.",
        )
        return error_response(error)
    headers = {
        "Content-Type": "application/json",
        "Idempotent-Replayed": "true",
        "Original-Request": stored.request_id,
    }
    return Response(stored.status, stored.body, headers)


def _not_expirable_message(status: str) -> str:
    return (
        'Only Checkout Sessions with a status in ["open"] can be expired. '
        f"This Checkout Session has a status of `{status}`."
    )


def _mask(key: str) -> str:
    if len(key) <= 12:
        return "*" * len(key)
    return key[:8] + "*" * (len(key) - 12) + key[-4:]


def _money(amount: int, currency: str) -> str:
    if currency == "usd":
        return f"${amount / 100:,.2f}"
    return f"{amount / 100:,.2f} {currency.upper()}"


def _page(body: str) -> str:
    return (
        '<!doctype html>\n<html lang="en"><head><meta charset="utf-8">'
        "<title>Fake Stripe Checkout</title>"
        "<style>body{font-family:sans-serif;max-width:36rem;margin:2rem auto}"
        "table{width:100%;border-collapse:collapse}td,th{padding:.3rem;text-align:left}"
        "</style></head><body><h1>Fake Stripe Checkout</h1>\n"
        f"{body}\n</body></html>\n"
    )


def _line_item_row(item: LineItem) -> str:
    return (
        f'<tr><td class="name">{html.escape(item.name)}</td>'
        f'<td class="quantity">{item.quantity}</td>'
        f'<td class="amount">{html.escape(_money(item.amount, item.currency))}</td></tr>'
    )


def _checkout_page(session: Json, items: list[LineItem]) -> str:
    rows = "".join(_line_item_row(item) for item in items)
    total = _money(int(session["amount_total"]), session["currency"])
    parts = [
        '<table id="line-items"><thead><tr><th>Item</th><th>Qty</th><th>Amount</th></tr>'
        f"</thead><tbody>{rows}</tbody></table>",
        f'<p>Total: <strong id="total">{html.escape(total)}</strong></p>',
    ]
    if session["status"] == "open":
        action = html.escape(f"/c/pay/{session['id']}")
        cancel = html.escape(session["cancel_url"])
        parts.append(
            f'<form method="post" action="{action}"><button type="submit" id="pay">Pay</button>'
            f'</form>\n<p><a id="cancel" href="{cancel}">Cancel</a></p>'
        )
    else:
        status = html.escape(str(session["status"]))
        parts.append(f'<p id="status">This Checkout Session is {status}.</p>')
    return _page("\n".join(parts))


__all__ = ["FakeStripe", "RecordedRequest", "decode_form", "load_fixtures"]
