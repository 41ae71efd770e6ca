from typing import Any

from django.conf import settings
from django.core.management.base import BaseCommand


class Command(BaseCommand):
    help = "Print the admin's path (set DJANGO_ADMIN_URL to choose it)."

    def handle(self, *args: Any, **options: Any) -> None:
        self.stdout.write("/" + settings.ADMIN_URL)
