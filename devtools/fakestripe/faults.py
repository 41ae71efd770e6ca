"""Fault injection: the next requests to a path prefix fail, hang, lose their connection before
they are handled, or are handled and then lose their answer."""

from __future__ import annotations

import copy
import threading
from dataclasses import dataclass
from typing import Literal

from devtools.fakestripe.errors import ApiError
from devtools.fakestripe.responses import Response, error_response


@dataclass
class Fault:
    kind: Literal["fail", "hang", "drop", "lose_answer"]
    prefix: str
    status: int = 500
    error_type: str = "api_error"
    seconds: float = 0.0
    should_retry: bool | None = None


class Faults:
    """Faults waiting for requests whose paths start with their prefix, first added first used.

    The fake's lock guards them. A hanging request waits outside it until its time is up or
    ``release_hangs()`` lets every hanging request go, so none outlives a reset or a stop.
    """

    def __init__(self, lock: threading.RLock) -> None:
        self._lock = lock
        self._waiting: list[Fault] = []
        self._release_hangs = threading.Event()

    def fail_next(
        self, n: int, *, status: int, error_type: str, prefix: str, should_retry: bool | None
    ) -> None:
        if status == 429 and error_type == "api_error":
            error_type = "rate_limit_error"
        self._add(Fault("fail", prefix, status, error_type, should_retry=should_retry), n)

    def hang_next(self, n: int, *, seconds: float, prefix: str) -> None:
        self._add(Fault("hang", prefix, seconds=seconds), n)

    def drop_next(self, n: int, *, prefix: str) -> None:
        self._add(Fault("drop", prefix), n)

    def lose_answer_next(self, n: int, *, prefix: str) -> None:
        """Handle the request (Stripe did the work), then close the connection unanswered."""
        self._add(Fault("lose_answer", prefix), n)

    def take(self, path: str) -> Fault | None:
        """The first waiting fault for ``path``, no longer waiting; None if there is none."""
        with self._lock:
            for index, fault in enumerate(self._waiting):
                if path.startswith(fault.prefix):
                    return self._waiting.pop(index)
        return None

    def apply(self, fault: Fault) -> Response | None:
        """The error response of a failure; None, to close the connection unanswered, for a
        hang (once it is over) or a drop."""
        if fault.kind == "hang":
            with self._lock:
                release = self._release_hangs
            release.wait(fault.seconds)
            return None
        if fault.kind in ("drop", "lose_answer"):
            return None
        error = ApiError(fault.status, fault.error_type, _message(fault.error_type))
        if fault.status == 429:
            error.code = "rate_limit"
        response = error_response(error)
        if fault.should_retry is not None:
            response.headers["Stripe-Should-Retry"] = str(fault.should_retry).lower()
        return response

    def release_hangs(self) -> None:
        with self._lock:
            self._release_hangs.set()
            self._release_hangs = threading.Event()

    def clear(self) -> None:
        """Let hanging requests go and forget the faults still waiting."""
        with self._lock:
            self.release_hangs()
            self._waiting.clear()

    def _add(self, fault: Fault, n: int) -> None:
        with self._lock:
            self._waiting.extend(copy.copy(fault) for _ in range(n))


def _message(error_type: str) -> str:
    if error_type == "rate_limit_error":
        return (
            "Request rate limit exceeded. Learn more about rate limits here "
            "https://stripe.com/docs/rate-limits."
        )
    return "An unknown error occurred (injected by FakeStripe)."
