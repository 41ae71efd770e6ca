"""A real SMTP server on loopback that keeps every message it accepts: the tests' mailbox.

`SMTPSink` speaks SMTP through aiosmtpd in a thread of its own, so the shop's email framework
sends over a real socket exactly as in production. It can refuse for a while (a temporary
4xx answer, as a busy or broken relay gives) and hold a sender in the middle of a conversation
(to stop a worker in the act of sending).
"""

import asyncio
import email
import email.policy
import socket
import threading
import time
from dataclasses import dataclass
from email.message import EmailMessage
from types import TracebackType
from typing import Any, cast

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP, Envelope, Session

REFUSAL = "451 4.3.0 Mail server temporarily unavailable, try again later"


@dataclass(frozen=True)
class Received:
    """One accepted message: its envelope and the parsed message."""

    mail_from: str
    recipients: tuple[str, ...]
    message: EmailMessage

    @property
    def subject(self) -> str:
        return str(self.message["Subject"])

    @property
    def text(self) -> str:
        return self._part("plain")

    @property
    def html(self) -> str:
        return self._part("html")

    def _part(self, subtype: str) -> str:
        part = self.message.get_body(preferencelist=(subtype,))
        return cast(EmailMessage, part).get_content() if part is not None else ""


class _Handler:
    def __init__(self, sink: "SMTPSink") -> None:
        self.sink = sink

    async def handle_RCPT(
        self, server: SMTP, session: Session, envelope: Envelope, address: str, options: list[str]
    ) -> str:
        self.sink._attempted()
        while self.sink._holding.is_set():
            await asyncio.sleep(0.02)
        if self.sink._refusing.is_set():
            return REFUSAL
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        raw = envelope.original_content or b""
        message = email.message_from_bytes(raw, policy=email.policy.default)
        self.sink._accept(
            Received(
                mail_from=str(envelope.mail_from),
                recipients=tuple(envelope.rcpt_tos),
                message=cast(EmailMessage, message),
            )
        )
        return "250 Message accepted for delivery"


class SMTPSink:
    """An SMTP server on 127.0.0.1 keeping what it accepts; use as a context manager."""

    def __init__(self, host: str = "127.0.0.1", port: int = 0) -> None:
        self.host = host
        self.port = port or _free_port()
        self._lock = threading.Condition()
        self._received: list[Received] = []
        self._attempts = 0
        self._refusing = threading.Event()
        self._holding = threading.Event()
        self._held = threading.Event()
        self._controller = Controller(_Handler(self), hostname=host, port=self.port)

    def __enter__(self) -> "SMTPSink":
        self._controller.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._holding.clear()
        self._controller.stop()

    @property
    def received(self) -> list[Received]:
        with self._lock:
            return list(self._received)

    @property
    def attempts(self) -> int:
        """How many recipients senders have offered, accepted or not."""
        with self._lock:
            return self._attempts

    def reset(self) -> None:
        with self._lock:
            self._received.clear()
            self._attempts = 0
        self._refusing.clear()
        self._holding.clear()
        self._held.clear()

    def refuse(self, refusing: bool = True) -> None:
        """Answer every recipient with a temporary failure (451) until refuse(False)."""
        if refusing:
            self._refusing.set()
        else:
            self._refusing.clear()

    def hold(self) -> None:
        """Keep the next senders waiting at their recipient until release()."""
        self._held.clear()
        self._holding.set()

    def release(self) -> None:
        self._holding.clear()

    def wait_until_held(self, timeout: float = 30) -> None:
        if not self._held.wait(timeout):
            raise TimeoutError("no sender reached the held SMTP server")

    def wait_for(self, count: int, timeout: float = 30, **match: Any) -> list[Received]:
        """Wait until at least `count` messages (to `to=` an address, if given) arrived."""
        deadline = time.monotonic() + timeout
        with self._lock:
            while True:
                found = self._matching(**match)
                if len(found) >= count:
                    return found
                left = deadline - time.monotonic()
                if left <= 0:
                    raise TimeoutError(f"{len(found)} of {count} messages after {timeout}s")
                self._lock.wait(left)

    def to(self, address: str) -> list[Received]:
        with self._lock:
            return self._matching(to=address)

    def _matching(self, to: str | None = None) -> list[Received]:
        return [r for r in self._received if to is None or to in r.recipients]

    def _attempted(self) -> None:
        with self._lock:
            self._attempts += 1
        if self._holding.is_set():
            self._held.set()

    def _accept(self, received: Received) -> None:
        with self._lock:
            self._received.append(received)
            self._lock.notify_all()


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])
