"""Background tasks of notifications: thin wrappers run by `manage.py db_worker`."""

from django_tasks import task

from shop.notifications.services import notification_send


@task()
def notification_send_task(notification_id: int) -> str:
    return notification_send(notification_id=notification_id)
