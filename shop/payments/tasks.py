"""Background tasks of payments: thin wrappers run by `manage.py db_worker`."""

from django_tasks import task

from shop.payments.webhooks import webhook_delivery_process

# Before emails and other work (the worker takes the highest priority first): after a burst of
# payments, the next payment is applied without waiting for the emails of the ones before it.
WEBHOOK_PRIORITY = 50


@task(priority=WEBHOOK_PRIORITY)
def webhook_delivery_process_task(delivery_id: int, attempt: int = 1) -> str:
    return str(webhook_delivery_process(delivery_id=delivery_id, attempt=attempt))
