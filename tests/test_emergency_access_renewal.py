"""An open emergency access does not renew itself: asking again while it is open needs a
new reason, and the renewal is a new grant of its own (a separate row in the patient's
access log and in the recent emergency-access report)."""

from __future__ import annotations

import datetime as dt

import pytest
from django.core.exceptions import ValidationError
from django.urls import reverse
from django.utils import timezone

from careteam import services as team_services
from careteam.models import AuditAction, AuditEvent, EmergencyAccess, NotificationKind
from careteam.views_security import emergency_access_recent

pytestmark = pytest.mark.django_db

REASON = "Unconscious in the emergency room"


def test_the_stored_codes_stay_as_they_were_written():
    """Audit rows are append-only: the code of an emergency access stays "break-glass",
    the value the earlier rows carry, though the code says emergency access everywhere."""
    assert AuditAction.EMERGENCY_ACCESS == "break-glass"
    assert NotificationKind.EMERGENCY_ACCESS == "break-glass"


def _open(world, reason=REASON):
    return team_services.emergency_access_open(by=world.outsider, patient=world.patient, reason=reason)


@pytest.mark.parametrize("again", [REASON, "  unconscious in the EMERGENCY   room. "])
def test_the_same_reason_does_not_renew_an_open_grant(world, again):
    first = _open(world)
    with pytest.raises(ValidationError, match="state a new reason"):
        _open(world, again)
    assert list(EmergencyAccess.objects.filter(user=world.outsider)) == [first]


def test_a_new_reason_opens_a_new_grant_shown_as_a_renewal(world):
    first = _open(world)
    second = _open(world, "Still unconscious, family asks about medicines")
    assert second.pk != first.pk and second.expires_at > first.expires_at
    assert EmergencyAccess.objects.filter(user=world.outsider, patient=world.patient).count() == 2
    event = AuditEvent.objects.filter(action=AuditAction.EMERGENCY_ACCESS, object_id=str(second.pk)).get()
    assert event.detail.startswith(f"renews emergency access {first.pk}; reason: Still unconscious")
    rows = list(emergency_access_recent(days=1))
    assert [(g.pk, g.earlier or 0) for g in rows] == [(second.pk, 1), (first.pk, 0)]


def test_the_same_reason_is_fine_once_the_grant_has_expired(world):
    first = _open(world)
    EmergencyAccess.objects.filter(pk=first.pk).update(
        started_at=timezone.now() - dt.timedelta(hours=6), expires_at=timezone.now() - dt.timedelta(hours=1)
    )
    assert _open(world).pk != first.pk


def test_another_clinicians_grant_does_not_block_the_same_reason(world):
    _open(world)
    grant = team_services.emergency_access_open(
        by=world.other_team_nurse, patient=world.patient, reason=REASON
    )
    assert grant.user == world.other_team_nurse


def test_the_page_refuses_a_renewal_with_the_same_reason_and_audits_it(world, client):
    client.force_login(world.outsider)
    body = {"mrn": world.patient.mrn, "reason": REASON, "acknowledge": "on"}
    assert client.post(reverse("security:emergency_access"), body).status_code == 302
    response = client.post(reverse("security:emergency_access"), body)
    assert response.status_code == 200
    assert b"state a new reason" in response.content
    assert EmergencyAccess.objects.filter(user=world.outsider).count() == 1
    refused = AuditEvent.objects.filter(action=AuditAction.EMERGENCY_ACCESS, outcome="denied").get()
    assert refused.patient_id == world.patient.pk and "state a new reason" in refused.detail
    body["reason"] = "Needs the medicine list for the surgeon"
    assert client.post(reverse("security:emergency_access"), body).status_code == 302
    assert EmergencyAccess.objects.filter(user=world.outsider).count() == 2
