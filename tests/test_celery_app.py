"""The Celery app as ops start it: JSON only, queues named for their work, the schedule."""

from __future__ import annotations

from celery.schedules import crontab

from beat_schedule import SCHEDULE
from loyalty import queueing
from workers import app


def test_payloads_are_json_never_pickle() -> None:
    assert app.conf.task_serializer == "json"
    assert app.conf.result_serializer == "json"
    assert list(app.conf.accept_content) == ["json"]


def test_tasks_survive_a_dying_worker() -> None:
    assert app.conf.task_acks_late and app.conf.task_reject_on_worker_lost
    assert app.conf.worker_prefetch_multiplier == 1


def test_every_task_has_its_queue_and_a_worker_without_q_serves_all() -> None:
    app.loader.import_default_modules()  # what a worker does at start: conf.include
    assert {queue.name for queue in app.conf.task_queues} == {
        "order_events", "crosssell", "messages", "maintenance"}
    # One exchange and key per queue, so a message lands in exactly one queue.
    assert all(queue.exchange.name == queue.routing_key == queue.name
               for queue in app.conf.task_queues)
    routes = {queueing.APPLY_ORDER_EVENTS: "order_events",
              queueing.APPLY_ORDER_EVENT: "order_events",
              queueing.CROSSSELL_SCAN: "crosssell", queueing.SEND_MESSAGE: "messages",
              queueing.MIRROR_OA_TAG: "messages", queueing.SWEEP_TAGS: "maintenance",
              queueing.RELAY_OUTBOX: "maintenance", queueing.BIRTHDAYS: "maintenance"}
    for task, queue in routes.items():
        assert task in app.tasks
        assert app.amqp.router.route({}, task)["queue"].name == queue


def test_the_schedule_runs_the_daily_jobs_in_shop_time() -> None:
    assert app.conf.timezone == "Asia/Ho_Chi_Minh"
    by_task = {entry["task"]: entry["schedule"] for entry in SCHEDULE.values()}
    assert by_task[queueing.CROSSSELL_SCAN] == crontab(hour=9, minute=0)
    assert by_task[queueing.BIRTHDAYS] == crontab(hour=8, minute=0)
    assert isinstance(by_task[queueing.SWEEP_TAGS], crontab)
    assert queueing.RELAY_OUTBOX in by_task
    assert app.conf.beat_schedule == SCHEDULE
