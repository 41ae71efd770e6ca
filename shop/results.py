"""What applying something did, as a kind the callers branch on and a message people read.

Only the web layer turns a kind into an HTTP status, and the admin and commands into wording.
"""

from dataclasses import dataclass
from enum import StrEnum
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from shop.orders.models import Order


class Kind(StrEnum):
    APPLIED = "applied"  # the shop's state changed
    NO_CHANGE = "no_change"  # understood, and nothing needed changing
    DUPLICATE = "duplicate"  # this event was applied before; its first outcome stands
    IGNORED = "ignored"  # not about anything of ours, or not something the shop handles
    FLAGGED = "flagged"  # money needs an owner's look; nothing was dropped
    REFUSED = "refused"  # not trusted (signature, body): nothing was applied
    FAILED = "failed"  # processing raised; everything it wrote was rolled back
    QUEUED = "queued"  # kept, and handed to the worker, which applies it (and says how) later

    @property
    def settled(self) -> bool:
        """Final: nothing more will happen for this input (a retry would change nothing)."""
        return self not in {Kind.REFUSED, Kind.FAILED, Kind.QUEUED}


KIND_WORDING = {
    Kind.APPLIED: "",
    Kind.NO_CHANGE: "no change",
    Kind.DUPLICATE: "duplicate",
    Kind.IGNORED: "ignored",
    Kind.FLAGGED: "flagged",
    Kind.REFUSED: "refused",
    Kind.FAILED: "failed",
    Kind.QUEUED: "queued",
}


@dataclass(frozen=True)
class Outcome:
    kind: Kind
    message: str
    order: "Order | None" = None

    @property
    def changed(self) -> bool:
        return self.kind == Kind.APPLIED

    def __str__(self) -> str:
        return describe(self.kind, self.message)


def describe(kind: Kind, message: str) -> str:
    """One line for logs, records and people: "paid", "no change: order is paid"…"""
    prefix = KIND_WORDING[kind]
    return f"{prefix}: {message}" if prefix else message
