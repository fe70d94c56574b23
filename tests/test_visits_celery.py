"""The authorisation warnings through a real Redis broker and a real `celery worker`:
the used-up warning reaches the case manager once, as one notification and one email,
however many sweeps run."""

from __future__ import annotations

import datetime as dt

import pytest
from django.utils import timezone

from careteam.models import AuditEvent, Notification, NotificationKind
from careteam.permissions import patient_access
from careteam.tasks import reminders_sweep as reminders_sweep_task
from tests import factories as f
from tests.processes import task_result
from tests.test_reminders_celery import (  # noqa: F401 - fixtures
    Worker,
    _emails,
    _unsent,
    _wait,
    main_redis,
    queue,
    workers,
)
from visits import services
from visits.models import Authorisation

pytestmark = [pytest.mark.celery_worker, pytest.mark.django_db(transaction=True)]


def test_the_used_up_warning_is_one_notification_and_one_email(world, main_redis, queue, workers, tmp_path):  # noqa: F811 - the fixtures imported above
    worker = Worker(broker=main_redis, queue=queue, mail_dir=tmp_path).start()
    workers.append(worker)
    access = patient_access(world.case_manager, world.patient)
    auth = services.authorisation_create(
        access=access, by=world.case_manager, payer="Acme", service="Nursing visits",
        discipline=f.discipline("nursing"), units_authorised=1,
        start_date=timezone.localdate() - dt.timedelta(days=1),  # the visit below may fall on yesterday
        end_date=timezone.localdate() + dt.timedelta(days=90), status="approved",
    )  # fmt: skip
    visit = services.visit_book(
        access=access, by=world.case_manager, start=timezone.now() - dt.timedelta(hours=2),
        clinician=world.nurse, authorisation=auth, duration_minutes=30,
    ).visit  # fmt: skip
    services.visit_set_status(
        access=access, visit=visit, by=world.nurse, status="fulfilled", expected_version=1
    )
    auth.refresh_from_db()
    assert (auth.units_used, auth.status) == (1, "exhausted")
    for _ in range(3):  # a late beat, twice more
        result = reminders_sweep_task.apply_async(queue=queue, ignore_result=False)
        task_result(result.id, main_redis)
    _wait(lambda: _unsent() == 0, 30, "the email")
    warnings = Notification.objects.filter(kind=NotificationKind.AUTHORISATION_EXHAUSTED)
    assert [(n.recipient_id, n.object_id) for n in warnings] == [(world.case_manager.pk, auth.pk)]
    assert _emails(tmp_path).count(str(warnings[0].pk)) == 1


def test_an_ended_authorisation_expires_once_with_one_warning(world, main_redis, queue, workers, tmp_path):  # noqa: F811 - the fixtures imported above
    worker = Worker(broker=main_redis, queue=queue, mail_dir=tmp_path).start()
    workers.append(worker)
    access = patient_access(world.case_manager, world.patient)
    auth = services.authorisation_create(
        access=access, by=world.case_manager, payer="Acme", service="Nursing visits",
        discipline=f.discipline("nursing"), units_authorised=4, start_date=timezone.localdate() - dt.timedelta(days=90),
        end_date=timezone.localdate() + dt.timedelta(days=1), status="approved",
    )  # fmt: skip
    Authorisation.objects.filter(pk=auth.pk).update(end_date=timezone.localdate() - dt.timedelta(days=1))
    for _ in range(3):  # a late beat, twice more
        result = reminders_sweep_task.apply_async(queue=queue, ignore_result=False)
        task_result(result.id, main_redis)
    _wait(lambda: _unsent() == 0, 30, "the email")
    auth.refresh_from_db()
    assert (auth.status, auth.version) == ("expired", 2)
    assert auth.history.filter(status="expired").count() == 1
    assert (
        AuditEvent.objects.filter(object_type="visits.authorisation", detail__startswith="expired").count()
        == 1
    )
    warnings = Notification.objects.filter(kind=NotificationKind.AUTHORISATION_EXPIRED)
    assert [(n.recipient_id, n.object_id) for n in warnings] == [(world.case_manager.pk, auth.pk)]
    assert _emails(tmp_path).count(str(warnings[0].pk)) == 1
