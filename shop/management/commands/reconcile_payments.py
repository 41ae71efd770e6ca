from typing import Any

from django.core.management.base import BaseCommand, CommandError

from shop.orders.reconcile import payments_reconcile


class Command(BaseCommand):
    help = (
        "Ask Stripe about every pending order and the refunds of the last 90 days, and apply "
        "what it says (for missed webhooks). Exits non-zero if anything could not be checked; "
        "the changes that could be made are kept."
    )

    def handle(self, *args: Any, **options: Any) -> None:
        report = payments_reconcile()
        for line in report.changes:
            self.stdout.write(line)
        self.stdout.write(
            f"checked {report.checked} pending orders and {report.refunds_seen} refunds, "
            f"changed {len(report.changes)}"
        )
        if report.errors:
            for line in report.errors:
                self.stderr.write(line)
            raise CommandError(f"{len(report.errors)} checks failed; the changes above are kept")
