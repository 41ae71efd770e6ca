from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from shop.payments.webhooks import webhook_deliveries_prune


class Command(BaseCommand):
    help = (
        "Delete webhook deliveries that need nothing more: settled ones older than --days, "
        "refused ones older than --refused-hours. Failed ones stay until replayed."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--days", type=int, default=30)
        parser.add_argument("--refused-hours", type=int, default=24)

    def handle(self, *args: Any, **options: Any) -> None:
        if options["days"] < 1 or options["refused_hours"] < 1:
            raise CommandError("--days and --refused-hours must be at least 1")
        deleted = webhook_deliveries_prune(
            older_than_days=options["days"], refused_older_than_hours=options["refused_hours"]
        )
        self.stdout.write(f"deleted {deleted} deliveries")
