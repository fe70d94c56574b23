"""Demographics edited from the chart (versioned, audited, history) and caregivers
added, edited and ended; bad input and people off the team change nothing."""

from __future__ import annotations

import pytest

from careteam.models import AuditEvent
from patients.models import Caregiver, Patient

pytestmark = pytest.mark.django_db


def _demo(patient, **values) -> dict:
    data = {
        "expected_version": patient.version,
        "given_name": patient.given_name,
        "family_name": patient.family_name,
        "preferred_name": "",
        "birth_date": patient.birth_date.isoformat(),
        "gender": "female",
        "preferred_language": "es",
        "phone": "555-0199",
        "email": "",
        "address_line": "",
        "city": "",
        "state": "",
        "postal_code": "",
        "preferences": "Home.",
    }
    data.update(values)
    return data


def test_member_edits_demographics_versioned_audited_with_history(client, world):
    p = world.patient
    client.force_login(world.pharmacist)
    assert client.get(f"/patients/{p.pk}/edit/").status_code == 200
    r = client.post(f"/patients/{p.pk}/edit/", _demo(p, phone="555-4242"))
    assert r.status_code == 302
    p2 = Patient.objects.get(pk=p.pk)
    assert p2.phone == "555-4242" and p2.version == p.version + 1 and p2.mrn == p.mrn
    assert p2.history.count() >= 2
    assert AuditEvent.objects.filter(patient_id=p.pk, action="update", detail__contains="phone").exists()


def test_stale_version_and_bad_input_write_nothing(client, world):
    p = world.patient
    client.force_login(world.nurse)
    r = client.post(f"/patients/{p.pk}/edit/", _demo(p, expected_version=p.version - 1 or 99, phone="1"))
    assert r.status_code == 409
    assert b"Someone saved this record" in r.content
    r = client.post(f"/patients/{p.pk}/edit/", _demo(p, birth_date="2999-01-01", phone="2"))
    assert r.status_code == 422
    assert Patient.objects.get(pk=p.pk).phone == p.phone


def test_off_team_gets_404_and_changes_nothing(client, world):
    p = world.patient
    client.force_login(world.outsider)
    assert client.get(f"/patients/{p.pk}/edit/").status_code == 404
    assert client.post(f"/patients/{p.pk}/edit/", _demo(p, phone="999")).status_code == 404
    assert (
        client.post(f"/patients/{p.pk}/caregivers/", {"name": "X", "relationship": "child"}).status_code
        == 404
    )
    assert Patient.objects.get(pk=p.pk).phone == p.phone
    assert not Caregiver.objects.filter(name="X").exists()


def test_caregiver_add_edit_end(client, world):
    p = world.patient
    url = f"/patients/{p.pk}/caregivers/"
    client.force_login(world.nurse)
    r = client.post(
        url,
        {
            "name": "Rosa Diaz",
            "relationship": "child",
            "phone": "555-1",
            "language": "es",
            "may_contact": "on",
            "is_primary": "on",
        },
    )
    assert r.status_code == 302, r.content[-2000:]
    c = Caregiver.objects.get(name="Rosa Diaz")
    assert c.language == "es" and c.may_contact and c.is_primary
    assert b"Rosa Diaz" in client.get(f"/patients/{p.pk}/").content
    pre = f"c{c.pk}-"
    r = client.post(
        url,
        {
            "caregiver": c.pk,
            pre + "expected_version": c.version,
            pre + "name": "Rosa Diaz",
            pre + "relationship": "child",
            pre + "phone": "555-2",
            pre + "language": "en",
        },
    )
    assert r.status_code == 302
    c.refresh_from_db()
    assert c.phone == "555-2" and not c.may_contact and c.version == 2
    # stale edit refused
    r = client.post(
        url,
        {"caregiver": c.pk, pre + "expected_version": 1, pre + "name": "Z", pre + "relationship": "child"},
    )
    assert r.status_code == 409 and Caregiver.objects.get(pk=c.pk).name == "Rosa Diaz"
    # bad input: no name, unknown language
    r = client.post(url, {"name": "", "relationship": "child", "language": "xx-nope"})
    assert r.status_code == 422 and Caregiver.objects.filter(patient=p).count() == 1
    r = client.post(url, {"caregiver": c.pk, "expected_version": c.version, "end": "1"})
    assert r.status_code == 302
    c.refresh_from_db()
    assert c.end_date is not None and not c.is_primary
    client.get(f"/patients/{p.pk}/")  # the flash message names her once
    assert client.get(f"/patients/{p.pk}/").context["chart"].caregivers == []


def test_caregiver_of_another_patient_is_404(client, world):
    other = Caregiver.objects.create(patient=world.other_patient, name="Hidden Person", relationship="friend")
    client.force_login(world.nurse)
    r = client.post(f"/patients/{world.patient.pk}/caregivers/", {"caregiver": other.pk, "end": "1"})
    assert r.status_code == 404
    other.refresh_from_db()
    assert other.end_date is None
    assert b"Hidden Person" not in client.get(f"/patients/{world.patient.pk}/caregivers/").content


def test_emergency_access_cannot_edit(client, world):
    from careteam import services as team_services
    from tests import factories as f

    glass = f.UserFactory(username="glassx", disciplines=["nursing"])
    team_services.emergency_access_open(by=glass, patient=world.patient, reason="Emergency room")
    client.force_login(glass)
    assert client.post(f"/patients/{world.patient.pk}/edit/", _demo(world.patient)).status_code == 403
