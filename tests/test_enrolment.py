"""Enrolling a patient: the form, the duplicate check, the enrolling clinician's role,
and what someone off a patient's team learns (an MRN exists, nothing more)."""

from __future__ import annotations

import datetime as dt

import pytest
from django.urls import reverse
from django.utils import timezone

from careteam.models import AuditEvent, TeamMembership
from patients.models import Patient
from tests import factories as f

pytestmark = pytest.mark.django_db

URL = "/patients/new/"


def _form(**values) -> dict:
    data = {
        "given_name": "Maria",
        "family_name": "Gonzalez",
        "preferred_name": "",
        "birth_date": "1950-04-03",
        "gender": "female",
        "mrn": "",
        "preferred_language": "es",
        "phone": "555-0101",
        "email": "",
        "address_line": "1 Main St",
        "city": "Springfield",
        "state": "",
        "postal_code": "",
        "preferences": "Stay at home with my cat.",
    }
    data.update(values)
    return data


def test_enrol_link_is_on_the_worklist_and_the_form_offers_language_names(client, world):
    client.force_login(world.nurse)
    assert reverse("patient_new") == URL
    assert URL.encode() in client.get("/patients/").content
    page = client.get(URL)
    assert page.status_code == 200
    assert b'<option value="es">Spanish (espa' in page.content
    assert b'<option value="vi">Vietnamese' in page.content


def test_case_manager_enrols_a_patient_and_becomes_its_case_manager(client, world):
    client.force_login(world.case_manager)
    response = client.post(URL, _form(mrn=" p-new 77 "))
    patient = Patient.objects.get(family_name="Gonzalez")
    assert response.status_code == 302
    assert response["Location"] == reverse("patient_chart", kwargs={"patient_id": patient.pk})
    assert patient.mrn == "P-NEW77"
    assert patient.preferred_language == "es"
    assert patient.preferences == "Stay at home with my cat."
    m = TeamMembership.objects.current().get(patient=patient)
    assert (m.user, m.role, m.discipline.code) == (world.case_manager, "case-manager", "case-management")
    assert AuditEvent.objects.filter(
        patient_id=patient.pk, action="create", object_type="patients.patient"
    ).exists()
    worklist = client.get("/patients/")
    assert b"Gonzalez, Maria" in worklist.content


def test_other_clinician_becomes_lead_and_an_mrn_is_generated(client, world):
    client.force_login(world.nurse)
    client.post(URL, _form())
    patient = Patient.objects.get(family_name="Gonzalez")
    assert patient.mrn.startswith("CT-")
    m = TeamMembership.objects.current().get(patient=patient)
    assert (m.user, m.role, m.discipline.code) == (world.nurse, "lead", "nursing")
    assert client.get(reverse("patient_chart", kwargs={"patient_id": patient.pk})).status_code == 200


@pytest.mark.parametrize(
    "values, field",
    [
        ({"given_name": ""}, "given_name"),
        ({"birth_date": "not a date"}, "birth_date"),
        ({"birth_date": (timezone.localdate() + dt.timedelta(days=2)).isoformat()}, "birth_date"),
        ({"birth_date": "1700-01-01"}, "birth_date"),
        ({"preferred_language": "klingon"}, "preferred_language"),
        ({"gender": "x"}, "gender"),
        ({"email": "nope"}, "email"),
        ({"mrn": "M" * 41}, "mrn"),
        ({"preferences": "x" * 4001}, "preferences"),
    ],
)
def test_bad_input_is_a_form_error_and_writes_nothing(client, world, values, field):
    client.force_login(world.nurse)
    before = (Patient.objects.count(), TeamMembership.objects.count())
    response = client.post(URL, _form(**values))
    assert response.status_code == 422
    assert field in response.context["form"].errors
    assert b"nothing was saved" in response.content
    assert (Patient.objects.count(), TeamMembership.objects.count()) == before


def test_same_mrn_is_refused_and_the_visible_record_is_shown(client, world):
    client.force_login(world.nurse)
    response = client.post(URL, _form(mrn=world.patient.mrn.lower()))
    assert response.status_code == 422
    assert "already exists" in str(response.context["form"].errors["mrn"])
    assert reverse("patient_chart", kwargs={"patient_id": world.patient.pk}).encode() in response.content
    assert b"same MRN" in response.content
    assert not Patient.objects.filter(family_name="Gonzalez").exists()


def test_hidden_record_with_the_same_mrn_is_only_said_to_exist(client, world):
    client.force_login(world.nurse)
    other = world.other_patient
    response = client.post(URL, _form(mrn=other.mrn))
    assert response.status_code == 422
    assert b"A record with this MRN already exists" in response.content
    assert reverse("security:emergency_access").encode() in response.content
    for leak in (other.family_name, other.given_name, f"/patients/{other.pk}/"):
        assert leak.encode() not in response.content
    assert not Patient.objects.filter(family_name="Gonzalez").exists()


def test_similar_name_and_same_birth_date_asks_for_confirmation(client, world):
    Patient.objects.filter(pk=world.patient.pk).update(birth_date=dt.date(1950, 4, 3))
    client.force_login(world.nurse)
    data = _form(given_name="Alicia", family_name="Team")
    response = client.post(URL, data)
    assert response.status_code == 422
    assert "not_a_duplicate" in response.context["form"].errors
    assert [p.pk for p in response.context["duplicates"].visible] == [world.patient.pk]
    assert Patient.objects.filter(family_name="Team").count() == 1
    response = client.post(URL, {**data, "not_a_duplicate": "on"})
    assert response.status_code == 302
    assert Patient.objects.filter(family_name="Team").count() == 2


def test_hidden_name_match_is_not_revealed_and_does_not_block(client, world):
    other = world.other_patient
    client.force_login(world.nurse)
    data = _form(given_name=other.given_name, family_name=other.family_name, birth_date=other.birth_date)
    response = client.post(URL, data)
    assert response.status_code == 302
    assert Patient.objects.filter(family_name=other.family_name).count() == 2


def test_database_refuses_a_second_patient_with_the_same_mrn(world):
    from django.db import IntegrityError, transaction

    with pytest.raises(IntegrityError), transaction.atomic():
        f.PatientFactory(mrn=world.patient.mrn)


def test_administrator_without_a_discipline_cannot_enrol(client, world):
    client.force_login(world.admin)
    response = client.post(URL, _form())
    assert response.status_code == 302
    assert response["Location"] == reverse("worklist")
    assert not Patient.objects.filter(family_name="Gonzalez").exists()


def test_anonymous_is_sent_to_sign_in(client, db):
    response = client.get(URL)
    assert response.status_code == 302 and "/accounts/login/" in response["Location"]


def test_enrolment_page_queries_do_not_grow_with_the_patients_visible(
    client, world, django_assert_max_num_queries
):

    Patient.objects.filter(pk=world.patient.pk).update(birth_date=dt.date(1950, 4, 3))
    for _ in range(5):
        p = f.PatientFactory(given_name="Alicia", family_name="Team", birth_date=dt.date(1950, 4, 3))
        from careteam import services as team_services

        team_services.membership_add(patient=p, user=world.nurse, discipline=f.discipline("nursing"))
    client.force_login(world.nurse)
    with django_assert_max_num_queries(12):
        response = client.post(URL, _form(given_name="Alicia", family_name="Team"))
    assert len(response.context["duplicates"].visible) == 6
