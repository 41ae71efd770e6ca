"""Stripe-shaped API errors: raised anywhere in the fake, answered as Stripe's error JSON."""

from __future__ import annotations

from typing import Any


class ApiError(Exception):
    """A Stripe-shaped error response; ``executed`` says whether the endpoint ran.

    Stripe stores an idempotent result only once the endpoint started executing, so
    authentication and parameter-validation failures are not replayed.
    """

    def __init__(
        self,
        status: int,
        error_type: str,
        message: str,
        *,
        code: str | None = None,
        param: str | None = None,
        executed: bool = False,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.error_type = error_type
        self.message = message
        self.code = code
        self.param = param
        self.executed = executed

    def body(self) -> dict[str, Any]:
        error: dict[str, Any] = {"type": self.error_type, "message": self.message}
        if self.code is not None:
            error["code"] = self.code
        if self.param is not None:
            error["param"] = self.param
        return {"error": error}


def invalid(message: str, *, param: str | None = None, code: str | None = None) -> ApiError:
    """A 400 invalid_request_error, as Stripe answers a bad parameter."""
    return ApiError(400, "invalid_request_error", message, code=code, param=param)
