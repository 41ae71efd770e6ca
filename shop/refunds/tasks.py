"""Background tasks of refunds: thin wrappers run by `manage.py db_worker`."""

from django_tasks import task

from shop.refunds.services import refund_submit


@task()
def refund_submit_task(refund_id: int) -> str:
    return str(refund_submit(refund_id=refund_id))
