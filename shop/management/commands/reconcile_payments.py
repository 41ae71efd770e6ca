from typing import Any

from django.core.management.base import BaseCommand, CommandError

from shop.orders.reconcile import payments_reconcile


class Command(BaseCommand):
    help = "Ask Stripe about every pending order and apply what it says (for missed webhooks)."

    def handle(self, *args: Any, **options: Any) -> None:
        report = payments_reconcile()
        for line in report.changes:
            self.stdout.write(line)
        self.stdout.write(f"checked {report.checked} pending orders, changed {len(report.changes)}")
        if report.errors:
            for line in report.errors:
                self.stderr.write(line)
            raise CommandError(f"{len(report.errors)} orders could not be checked")
