from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from shop.payments.models import WebhookEvent
from shop.payments.webhooks import webhook_event_replay


class Command(BaseCommand):
    help = "Process stored Stripe events again: the given ids, or every one that failed."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("event_ids", nargs="*", help="evt_... ids; default: all unprocessed")

    def handle(self, *args: Any, **options: Any) -> None:
        records = WebhookEvent.objects.order_by("received_at")
        if options["event_ids"]:
            records = records.filter(event_id__in=options["event_ids"])
            missing = set(options["event_ids"]) - set(records.values_list("event_id", flat=True))
            if missing:
                raise CommandError(f"unknown events: {', '.join(sorted(missing))}")
        else:
            records = records.filter(processed_at__isnull=True)
        failed = 0
        for record in records:
            result = webhook_event_replay(record=record)
            self.stdout.write(f"{record.event_id}: {result}")
            failed += not result.kind.settled
        if failed:
            raise CommandError(f"{failed} events failed again")
