from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from shop.refunds.models import RefundReason
from shop.refunds.services import refund_request
from shop.results import Kind


class Command(BaseCommand):
    help = (
        "Refund a paid order: all that remains, or --amount cents of it. The refund is made at "
        "the payment provider by the background worker; its result appears on the order."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("reference", help="the order's reference, ord_…")
        parser.add_argument("--amount", type=int, help="cents; default: what remains")
        parser.add_argument(
            "--reason",
            choices=RefundReason.values,
            default=RefundReason.REQUESTED_BY_CUSTOMER,
        )

    def handle(self, *args: Any, **options: Any) -> None:
        result = refund_request(
            order_reference=options["reference"],
            amount=options["amount"],
            reason=options["reason"],
            cause="asked from the command line",
        )
        if result.kind != Kind.APPLIED:
            raise CommandError(result.message)
        self.stdout.write(f"{options['reference']}: {result.message}")
