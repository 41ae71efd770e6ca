from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from shop.payments.webhooks import webhook_deliveries_prune


class Command(BaseCommand):
    help = "Delete webhook deliveries older than N days that were processed or had a bad signature."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--days", type=int, default=30)

    def handle(self, *args: Any, **options: Any) -> None:
        if options["days"] < 1:
            raise CommandError("--days must be at least 1")
        deleted = webhook_deliveries_prune(older_than_days=options["days"])
        self.stdout.write(f"deleted {deleted} deliveries")
