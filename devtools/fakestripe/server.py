"""The fake's HTTP side: a threaded server on 127.0.0.1, and the steps every API request goes
through there: its form decoded, its API key checked, its endpoint found by method and path,
and a retry under the same idempotency key answered with the first result.
"""

from __future__ import annotations

import copy
import hmac
import re
import socket
import sys
import threading
import traceback
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from functools import partial
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, cast
from urllib.parse import parse_qsl, unquote

from devtools.fakestripe.errors import ApiError
from devtools.fakestripe.forms import Params, decode_form
from devtools.fakestripe.objects import Json, random_id
from devtools.fakestripe.responses import Response, error_response, json_response

# (method, path with query, lower-cased headers, body) -> the response, or None to close the
# connection unanswered.
Answer = Callable[[str, str, dict[str, str], bytes], Response | None]
Endpoint = Callable[[Params], Json]
# (method, path pattern, handler): the pattern's named groups are the handler's keyword arguments.
Route = tuple[str, str, Callable[..., Json]]


@dataclass
class RecordedRequest:
    method: str
    path: str
    params: Params
    headers: dict[str, str]
    idempotency_key: str | None


class Server(ThreadingHTTPServer):
    """Serves on a free port of 127.0.0.1, each request answered by ``answer`` in a thread."""

    daemon_threads = True

    def __init__(self, answer: Answer) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.answer = answer

    def handle_error(self, request: Any, client_address: Any) -> None:
        # A client giving up (timeouts, retries) is expected; anything else is a bug worth seeing.
        if not isinstance(sys.exc_info()[1], ConnectionError):
            super().handle_error(request, client_address)


class _Handler(BaseHTTPRequestHandler):
    # Connections kept alive, as Stripe's are: the SDK's pool reuses one across calls (a new
    # connection per call would bill the shop a connect that real use does not pay). A handler
    # thread idles on its connection until the client closes it; they are daemon threads.
    protocol_version = "HTTP/1.1"
    # Headers and body buffered and sent together (handle_one_request flushes after each
    # answer): one segment for a small answer, as a real server sends it.
    wbufsize = 64 * 1024
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
        answer = cast(Server, self.server).answer
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        headers = {key.lower(): value for key, value in self.headers.items()}
        try:
            response = answer(method, self.path, headers, body)
        except Exception:
            traceback.print_exc()
            error = ApiError(500, "api_error", "FakeStripe crashed; see stderr.")
            response = json_response(500, error.body())
            response.headers["Stripe-Should-Retry"] = "false"
        if response is None:
            self.close_connection = True
            return
        self._write(response)

    def setup(self) -> None:
        super().setup()
        # An answer goes out at once (no Nagle wait for the client's delayed ACK on a
        # kept-alive connection), as a real server's does.
        self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def _write(self, response: Response) -> None:
        self.send_response(response.status)
        for name, value in response.headers.items():
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(response.body)))
        self.end_headers()
        self.wfile.write(response.body)


# --- an API request's steps --------------------------------------------------------------------


def request_id() -> str:
    return random_id("req_", 14)


def decode_params(raw: str) -> tuple[Params, ApiError | None]:
    """The request's parameters, or none and the error to answer once it is authenticated."""
    try:
        return decode_form(parse_qsl(raw, keep_blank_values=True)), None
    except ApiError as error:
        return {}, error


def authenticate(headers: dict[str, str], api_key: str) -> None:
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
    if not hmac.compare_digest(supplied, api_key):
        raise ApiError(401, "authentication_error", f"Invalid API Key provided: {_mask(supplied)}")


def route(routes: Iterable[Route], method: str, path: str) -> Endpoint:
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


def execute(endpoint: Endpoint, params: Params) -> Response:
    try:
        return json_response(200, endpoint(params))
    except ApiError as error:
        return error_response(error)


# --- idempotency keys --------------------------------------------------------------------------


@dataclass(frozen=True)
class _StoredResult:
    method: str
    path: str
    params: Params
    status: int
    body: bytes
    request_id: str


class IdempotencyKeys:
    """The results of POSTs sent with an idempotency key, replayed to a retry with that key.
    The fake's lock guards them."""

    def __init__(self, lock: threading.RLock) -> None:
        self._lock = lock
        self._results: dict[str, _StoredResult] = {}

    def respond(self, request: RecordedRequest, run: Callable[[], Response]) -> Response:
        """``run()``'s response, or the stored one if the request's key was used before."""
        key = request.idempotency_key
        if request.method != "POST" or not key:
            return run()
        with self._lock:  # held across execution so concurrent retries cannot both create
            stored = self._results.get(key)
            if stored is not None:
                return _replay(stored, request, key)
            response = run()
            if response.store:
                self._results[key] = _StoredResult(
                    method=request.method,
                    path=request.path,
                    params=copy.deepcopy(request.params),
                    status=response.status,
                    body=response.body,
                    request_id=response.headers.setdefault("Request-Id", request_id()),
                )
            return response

    def clear(self) -> None:
        with self._lock:
            self._results.clear()


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


def _mask(key: str) -> str:
    if len(key) <= 12:
        return "*" * len(key)
    return key[:8] + "*" * (len(key) - 12) + key[-4:]
