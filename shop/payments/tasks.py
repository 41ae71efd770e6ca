"""Background tasks of payments: thin wrappers run by `manage.py db_worker`."""

from django_tasks import task

from shop.payments.webhooks import webhook_delivery_process


@task()
def webhook_delivery_process_task(delivery_id: int, attempt: int = 1) -> str:
    return str(webhook_delivery_process(delivery_id=delivery_id, attempt=attempt))
