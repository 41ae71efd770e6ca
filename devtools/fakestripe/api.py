"""The stateful fake: ``FakeStripe`` holds the Checkout Sessions, changes them as a test asks
(complete, expire, fail a payment), answers the API's endpoints and the hosted payment page,
and makes the events a webhook would carry."""

from __future__ import annotations

import copy
import re
import threading
from types import TracebackType
from typing import Any
from urllib.parse import unquote

import requests

from devtools.fakestripe import events, objects, refunds
from devtools.fakestripe.errors import ApiError
from devtools.fakestripe.faults import Faults
from devtools.fakestripe.forms import Params
from devtools.fakestripe.objects import Json, load_fixtures, now, random_id
from devtools.fakestripe.page import checkout_page, document
from devtools.fakestripe.params import (
    CreateRequest,
    LineItem,
    check_read_params,
    parse_create_params,
)
from devtools.fakestripe.responses import Response, error_response, html_response
from devtools.fakestripe.server import (
    IdempotencyKeys,
    RecordedRequest,
    Route,
    Server,
    authenticate,
    decode_params,
    execute,
    request_id,
    route,
)

SESSION_ID_PLACEHOLDER = "{CHECKOUT_SESSION_ID}"


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
        self._idempotency = IdempotencyKeys(self._lock)
        self._line_items: dict[str, list[LineItem]] = {}
        self._payment_intents: dict[str, str] = {}
        self._intent_statuses: dict[str, str] = {}
        self._charges: dict[str, str] = {}
        self.refunds: dict[str, Json] = {}
        self.disputes: dict[str, Json] = {}
        # The status a refund created through the API gets (Stripe: usually succeeded at once).
        self.next_refund_status = "succeeded"
        self._server: Server | None = None
        self._thread: threading.Thread | None = None

    # lifecycle

    def start(self) -> FakeStripe:
        if self._server is not None:
            raise RuntimeError("FakeStripe is already running")
        self._server = Server(self._answer)
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
            self.refunds.clear()
            self.disputes.clear()
            self.next_refund_status = "succeeded"
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

    def fail_payment(self, session_id: str) -> Json:
        """An async payment (bank debit) failed: the session stays complete and unpaid, and its
        payment intent goes back to requires_payment_method."""
        with self._lock:
            session = self._session(session_id)
            if session["status"] != "complete" or session["payment_status"] != "unpaid":
                raise ValueError(f"{session_id} is not awaiting an async payment")
            self._intent_statuses[session["payment_intent"]] = "requires_payment_method"
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
        """A charge.refunded event for the session's charge. ``amount_refunded`` (default: all of
        it) is the total refunded; if the fake holds less, a refund made in Stripe's dashboard
        makes up the difference first."""
        with self._lock:
            session = self._paid_session(session_id)
            amount = int(session["amount_total"])
            total = amount if amount_refunded is None else amount_refunded
            if not 0 < total <= amount:
                raise ValueError(f"amount_refunded must be in 1..{amount}, got {total}")
            missing = total - self._refunded_total(session_id)
            if missing > 0:
                self.refund(session_id, amount=missing)
            charge = self._charge_object(session_id)
        return self.event("charge.refunded", charge)

    def refund(
        self,
        session_id: str,
        *,
        amount: int | None = None,
        status: str = "succeeded",
        reason: str | None = None,
        metadata: dict[str, str] | None = None,
    ) -> Json:
        """A refund of the session's payment made outside the shop (Stripe's dashboard)."""
        if status not in refunds.STATUSES:
            raise ValueError(f"unknown refund status {status!r}")
        with self._lock:
            session = self._paid_session(session_id)
            remaining = int(session["amount_total"]) - self._refunded_total(session_id)
            value = remaining if amount is None else amount
            if not 0 < value <= remaining:
                raise ValueError(f"refund amount must be in 1..{remaining}, got {value}")
            return refunds.public(
                self._store_refund(session, value, status=status, reason=reason, metadata=metadata)
            )

    def set_refund_status(self, refund_id: str, status: str) -> Json:
        if status not in refunds.STATUSES:
            raise ValueError(f"unknown refund status {status!r}")
        with self._lock:
            refund = self.refunds[refund_id]
            refund.update(
                status=status,
                failure_reason="lost_or_stolen_card" if status == "failed" else None,
            )
            return refunds.public(refund)

    def refund_event(self, type: str, refund_id: str, **kw: Any) -> Json:
        with self._lock:
            refund = refunds.public(self.refunds[refund_id])
        return self.event(type, refund, **kw)

    def dispute(
        self,
        session_id: str,
        *,
        reason: str = "fraudulent",
        amount: int | None = None,
        status: str = "needs_response",
    ) -> Json:
        """The customer's bank disputes the session's payment (a chargeback)."""
        with self._lock:
            session = self._paid_session(session_id)
            charge = self._charges.setdefault(session_id, random_id("ch_"))
            opened = objects.dispute(
                self._fixtures,
                charge=charge,
                payment_intent=session["payment_intent"],
                amount=int(session["amount_total"]) if amount is None else amount,
                currency=session["currency"],
                reason=reason,
                status=status,
                due_by=now() + 7 * 24 * 3600,
            )
            opened["_seq"] = len(self.disputes)
            self.disputes[opened["id"]] = opened
            return refunds.public(opened)

    def set_dispute_status(self, dispute_id: str, status: str) -> Json:
        with self._lock:
            self.disputes[dispute_id]["status"] = status
            return refunds.public(self.disputes[dispute_id])

    def dispute_event(self, type: str, dispute_id: str, **kw: Any) -> Json:
        with self._lock:
            disputed = refunds.public(self.disputes[dispute_id])
        return self.event(type, disputed, **kw)

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

    def lose_answer_next(self, n: int = 1, *, prefix: str = "/v1/") -> None:
        self._faults.lose_answer_next(n, prefix=prefix)

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

    def _existing_session(self, session_id: str) -> Json:
        """The session, or the 404 the API answers for an unknown one."""
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

    def _paid_session(self, session_id: str) -> Json:
        session = self._session(session_id)
        if not session.get("payment_intent") or session.get("payment_status") != "paid":
            raise ValueError(f"{session_id} has no payment to refund; complete() it first")
        return session

    def _session_for_intent(self, payment_intent: str) -> Json | None:
        for session in self.sessions.values():
            if session.get("payment_intent") == payment_intent:
                return session
        return None

    def _refunded_total(self, session_id: str) -> int:
        charge = self._charges.get(session_id)
        return sum(
            int(r["amount"])
            for r in self.refunds.values()
            if r["charge"] == charge and r["status"] in refunds.COUNTED
        )

    def _store_refund(
        self,
        session: Json,
        amount: int,
        *,
        status: str,
        reason: str | None,
        metadata: dict[str, str] | None,
    ) -> Json:
        charge = self._charges.setdefault(session["id"], random_id("ch_"))
        refund = refunds.refund_object(
            self._fixtures,
            charge=charge,
            payment_intent=session["payment_intent"],
            amount=amount,
            currency=session["currency"],
            status=status,
            reason=reason,
            metadata=metadata,
        )
        refund["_seq"] = len(self.refunds)
        self.refunds[refund["id"]] = refund
        return refund

    def _charge_object(self, session_id: str) -> Json:
        session = self._session(session_id)
        charge_id = self._charges.setdefault(session_id, random_id("ch_"))
        mine = [refunds.public(r) for r in self.refunds.values() if r["charge"] == charge_id]
        return objects.refunded_charge(
            self._fixtures,
            charge_id=charge_id,
            amount=int(session["amount_total"]),
            currency=session["currency"],
            payment_intent=session["payment_intent"],
            refunded=self._refunded_total(session_id),
            refunds=mine,
        )

    def _payment_intent_object(self, session: Json) -> Json:
        status = self._intent_statuses.get(session["payment_intent"])
        return objects.payment_intent(self._fixtures, session, status=status)

    # internals: the API's endpoints

    def _routes(self) -> list[Route]:
        return [
            ("POST", r"/v1/checkout/sessions", self._api_create),
            ("GET", r"/v1/checkout/sessions/(?P<session_id>[^/]+)", self._api_retrieve),
            ("POST", r"/v1/checkout/sessions/(?P<session_id>[^/]+)/expire", self._api_expire),
            ("POST", r"/v1/refunds", self._api_create_refund),
            ("GET", r"/v1/refunds", self._api_list_refunds),
            ("GET", r"/v1/refunds/(?P<refund_id>[^/]+)", self._api_retrieve_refund),
            ("GET", r"/v1/disputes", self._api_list_disputes),
        ]

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

    def _api_expire(self, params: Params, *, session_id: str) -> Json:
        check_read_params(params)
        with self._lock:
            status = self._existing_session(session_id)["status"]
            if status != "open":
                raise ApiError(
                    400, "invalid_request_error", _not_expirable_message(status), executed=True
                )
            return self.expire(session_id)

    def _api_create_refund(self, params: Params) -> Json:
        request = refunds.parse_create(params)
        with self._lock:
            session = None
            if request.payment_intent:
                session = self._session_for_intent(request.payment_intent)
            elif request.charge:
                session_id = next(
                    (s for s, c in self._charges.items() if c == request.charge), None
                )
                session = self.sessions.get(session_id) if session_id else None
            if session is None:
                what = request.payment_intent or request.charge
                raise ApiError(
                    400,
                    "invalid_request_error",
                    f"No such payment: '{what}'",
                    code="resource_missing",
                    param="payment_intent" if request.payment_intent else "charge",
                    executed=True,
                )
            if session.get("payment_status") != "paid":
                raise ApiError(
                    400,
                    "invalid_request_error",
                    "This PaymentIntent does not have a successful charge to refund.",
                    param="payment_intent",
                    executed=True,
                )
            remaining = int(session["amount_total"]) - self._refunded_total(session["id"])
            if remaining <= 0:
                raise ApiError(
                    400,
                    "invalid_request_error",
                    "Charge has already been refunded.",
                    code="charge_already_refunded",
                    executed=True,
                )
            amount = remaining if request.amount is None else request.amount
            if amount > remaining:
                raise ApiError(
                    400,
                    "invalid_request_error",
                    f"Refund amount ({amount}) is greater than unrefunded amount on charge "
                    f"({remaining})",
                    param="amount",
                    executed=True,
                )
            refund = self._store_refund(
                session,
                amount,
                status=self.next_refund_status,
                reason=request.reason,
                metadata=request.metadata,
            )
            return refunds.public(refund)

    def _api_list_refunds(self, params: Params) -> Json:
        query = refunds.parse_list(params)
        with self._lock:
            return refunds.page(list(self.refunds.values()), query)

    def _api_list_disputes(self, params: Params) -> Json:
        query = refunds.parse_list(params)
        with self._lock:
            return refunds.page(list(self.disputes.values()), query, url="/v1/disputes")

    def _api_retrieve_refund(self, params: Params, *, refund_id: str) -> Json:
        check_read_params(params)
        with self._lock:
            refund = self.refunds.get(refund_id)
            if refund is None:
                raise ApiError(
                    404,
                    "invalid_request_error",
                    f"No such refund: '{refund_id}'",
                    code="resource_missing",
                    param="id",
                    executed=True,
                )
            return refunds.public(refund)

    # internals: HTTP

    def _answer(
        self, method: str, raw_path: str, headers: dict[str, str], body: bytes
    ) -> Response | None:
        path, _, query = raw_path.partition("?")
        if path.startswith("/c/"):
            fault = self._faults.take(path)
            return self._faults.apply(fault) if fault else self._answer_page(method, path)
        params, decode_error = decode_params(body.decode("utf-8", "replace") or query)
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
        if fault is not None and fault.kind == "lose_answer":
            self._answer_api(request, decode_error)
        response = self._faults.apply(fault) if fault else self._answer_api(request, decode_error)
        if response is not None:
            response.headers.setdefault("Request-Id", request_id())
        return response

    def _answer_api(self, request: RecordedRequest, decode_error: ApiError | None) -> Response:
        try:
            authenticate(request.headers, self.api_key)
            endpoint = route(self._routes(), request.method, request.path)
            if decode_error is not None:
                raise decode_error
        except ApiError as error:
            return error_response(error)
        return self._idempotency.respond(request, lambda: execute(endpoint, request.params))

    # internals: hosted page

    def _answer_page(self, method: str, path: str) -> Response:
        match = re.fullmatch(r"/c/pay/([^/]+)", path)
        with self._lock:
            session = self.sessions.get(unquote(match.group(1))) if match else None
            snapshot = copy.deepcopy(session) if session else None
            items = list(self._line_items.get(snapshot["id"], [])) if snapshot else []
        if snapshot is None:
            return html_response(404, document('<p id="status">No such Checkout Session.</p>'))
        if method == "GET":
            return html_response(200, checkout_page(snapshot, items))
        if method != "POST":
            return html_response(405, document("<p>Method not allowed.</p>"))
        return self._pay(snapshot, items)

    def _pay(self, session: Json, items: list[LineItem]) -> Response:
        try:
            completed = self.complete(session["id"])
        except ValueError:  # already paid or expired, e.g. a double submit
            return html_response(409, checkout_page(session, items))
        self._deliver_quietly("checkout.session.completed", completed)
        location = completed["success_url"].replace(SESSION_ID_PLACEHOLDER, completed["id"])
        return html_response(303, document("<p>Redirecting…</p>"), {"Location": location})

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


def _not_expirable_message(status: str) -> str:
    return (
        'Only Checkout Sessions with a status in ["open"] can be expired. '
        f"This Checkout Session has a status of `{status}`."
    )
