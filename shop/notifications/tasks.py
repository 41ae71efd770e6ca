"""Background tasks of notifications: thin wrappers run by `manage.py db_worker`."""

from django_tasks import task

from shop.notifications.services import notification_send, orders_link_send


@task()
def notification_send_task(notification_id: int) -> str:
    return notification_send(notification_id=notification_id)


@task()
def orders_link_send_task(email: str, attempt: int = 1) -> str:
    return orders_link_send(email=email, attempt=attempt)
