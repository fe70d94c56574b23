"""The team picker and ending roles: a case manager finds clinicians in a directory (name,
username, discipline, with their caseload) instead of typing a username; ending a role is
confirmed with a reason; the last case manager hands over to a named successor; anyone
may leave a team and is told where they land."""

from __future__ import annotations

import datetime as dt

import pytest
from django.test import Client
from django.urls import reverse
from django.utils import timezone

from careteam import services as team_services
from careteam.models import AuditEvent, TeamMembership
from tests import factories as f

pytestmark = pytest.mark.django_db


def signed_in(user) -> Client:
    client = Client()
    client.force_login(user)
    return client


def picker(world) -> str:
    return reverse("team_role_add", kwargs={"patient_id": world.patient.pk})


def end_url(world, membership) -> str:
    return reverse("team_role_end", kwargs={"patient_id": world.patient.pk, "membership_id": membership.pk})


def role_of(world, user):
    return TeamMembership.objects.current().get(patient=world.patient, user=user)


def test_the_directory_finds_clinicians_by_name_and_discipline_with_their_caseload(world):
    dietitian = f.UserFactory(
        username="dana.diet", first_name="Dana", last_name="Okoye", disciplines=["dietetics"]
    )
    f.UserFactory(
        username="gone", first_name="Dana", last_name="Gone", disciplines=["dietetics"], is_active=False
    )
    for _ in range(3):
        team_services.membership_add(
            patient=f.PatientFactory(), user=dietitian, discipline=f.discipline("dietetics")
        )
    client = signed_in(world.case_manager)
    page = client.get(picker(world), {"q": "dana"})
    assert page.status_code == 200
    html = page.content.decode()
    assert "Dana Okoye" in html and "3 patients" in html and "Dietetics" in html
    assert "Gone" not in html
    by_discipline = client.get(picker(world), {"discipline": f.discipline("pharmacy").pk})
    names = [u.username for u in by_discipline.context["results"]]
    assert names == ["pharm1"]
    assert by_discipline.context["results"][0].on_team is True
    # accounts without a discipline (administrators) are never offered
    assert client.get(picker(world), {"q": "admin1"}).context["results"] == []
    # htmx asks for the results only
    fragment = client.get(picker(world), {"q": "dana"}, headers={"HX-Request": "true"})
    assert b"<html" not in fragment.content and b"Dana Okoye" in fragment.content


def test_the_directory_costs_the_same_queries_for_5_or_25_clinicians(world, django_assert_max_num_queries):
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    client = signed_in(world.case_manager)
    for i in range(5):
        f.UserFactory(username=f"walker{i}", last_name="Walker", disciplines=["nursing", "dietetics"])
    with CaptureQueriesContext(connection) as five:
        assert len(client.get(picker(world), {"q": "walker"}).context["results"]) == 5
    for i in range(5, 25):
        f.UserFactory(username=f"walker{i}", last_name="Walker", disciplines=["nursing"])
    with django_assert_max_num_queries(len(five.captured_queries)):
        page = client.get(picker(world), {"q": "walker"})
    assert len(page.context["results"]) == 25


def test_assigning_from_the_picker_and_bad_choices(world):
    dietitian = f.UserFactory(username="dana.diet", disciplines=["dietetics"])
    client = signed_in(world.case_manager)
    refused = client.post(
        picker(world), {"user": dietitian.pk, "discipline": f.discipline("pharmacy").pk, "role": "member"}
    )
    assert refused.status_code == 422 and "does not practise" in refused.content.decode()
    assert not TeamMembership.objects.filter(user=dietitian).exists()
    ok = client.post(
        picker(world), {"user": dietitian.pk, "discipline": f.discipline("dietetics").pk, "role": "member"}
    )
    assert ok.status_code == 302
    assert role_of(world, dietitian).role == "member"


@pytest.mark.parametrize(("who", "status"), [("nurse", 403), ("outsider", 404), ("other_team_nurse", 404)])
def test_the_picker_is_for_the_case_manager_and_lead(world, who, status):
    f.UserFactory(username="dana.diet", first_name="Dana", disciplines=["dietetics"])
    response = signed_in(getattr(world, who)).get(picker(world), {"q": "dana"})
    assert response.status_code == status
    assert b"dana.diet" not in response.content


def test_ending_a_role_is_confirmed_with_a_reason(world):
    client = signed_in(world.case_manager)
    pharmacist = role_of(world, world.pharmacist)
    confirm = client.get(end_url(world, pharmacist))
    assert confirm.status_code == 200 and "End the role" in confirm.content.decode()
    refused = client.post(end_url(world, pharmacist), {"expected_version": pharmacist.version})
    assert refused.status_code == 422 and "reason" in refused.context["form"].errors
    assert role_of(world, world.pharmacist).version == pharmacist.version
    done = client.post(
        end_url(world, pharmacist), {"expected_version": pharmacist.version, "reason": "Regimen settled"}
    )
    assert done.status_code == 302
    assert not TeamMembership.objects.current().filter(pk=pharmacist.pk).exists()
    assert AuditEvent.objects.filter(
        object_id=str(pharmacist.pk), detail__endswith=": Regimen settled"
    ).exists()


def test_the_lead_cannot_end_the_case_managers_role_even_with_a_reason(world):
    cm = role_of(world, world.case_manager)
    client = signed_in(world.lead)
    assert client.get(end_url(world, cm)).status_code == 403
    assert (
        client.post(end_url(world, cm), {"expected_version": cm.version, "reason": "Taking over"}).status_code
        == 403
    )
    assert role_of(world, world.case_manager).pk == cm.pk


def test_the_last_case_manager_hands_over_to_a_named_successor(world):
    successor = f.UserFactory(
        username="cm.new", first_name="Nia", last_name="Moss", disciplines=["case-management"]
    )
    cm = role_of(world, world.case_manager)
    client = signed_in(world.case_manager)
    confirm = client.get(end_url(world, cm))
    html = confirm.content.decode()
    assert "only case manager" in html and "Nia Moss" in html
    assert (
        world.nurse.display_name not in html.split("Case manager who takes over")[1]
    )  # nurses are not offered
    refused = client.post(
        end_url(world, cm), {"expected_version": cm.version, "reason": "Leaving the service"}
    )
    assert refused.status_code == 422 and "takes over" in refused.content.decode()
    later = (timezone.localdate() + dt.timedelta(days=7)).isoformat()
    refused = client.post(
        end_url(world, cm),
        {"expected_version": cm.version, "reason": "Leaving", "successor": successor.pk, "end_date": later},
    )
    assert refused.status_code == 422 and "happens today" in refused.content.decode()
    wrong = client.post(
        end_url(world, cm), {"expected_version": cm.version, "reason": "Leaving", "successor": world.nurse.pk}
    )
    assert wrong.status_code == 422
    assert role_of(world, world.case_manager).role == "case-manager"

    done = client.post(
        end_url(world, cm), {"expected_version": cm.version, "reason": "Leaving", "successor": successor.pk}
    )
    assert done.status_code == 302 and done.url == reverse("worklist")
    assert role_of(world, successor).role == "case-manager"
    assert (
        not TeamMembership.objects.current().filter(patient=world.patient, user=world.case_manager).exists()
    )
    assert AuditEvent.objects.filter(detail="case manager handed over from cm", username="cm").exists()
    assert client.get(reverse("patient_chart", kwargs={"patient_id": world.patient.pk})).status_code == 404


def test_a_member_leaves_the_team_and_lands_on_the_worklist(world):
    nurse = role_of(world, world.nurse)
    client = signed_in(world.nurse)
    chart = client.get(reverse("patient_chart", kwargs={"patient_id": world.patient.pk})).content.decode()
    assert "Leave the team" in chart and "End role" not in chart
    confirm = client.get(end_url(world, nurse)).content.decode()
    assert "no longer see" in confirm and "land on your worklist" in confirm
    done = client.post(
        end_url(world, nurse), {"expected_version": nurse.version, "reason": "Moved to nights"}, follow=True
    )
    assert done.redirect_chain[-1][0] == reverse("worklist")
    assert "You left" in done.content.decode()
    assert client.get(reverse("patient_chart", kwargs={"patient_id": world.patient.pk})).status_code == 404


def test_another_members_role_cannot_be_ended_by_a_member(world):
    pharmacist = role_of(world, world.pharmacist)
    client = signed_in(world.nurse)
    assert client.get(end_url(world, pharmacist)).status_code == 403
    assert (
        client.post(
            end_url(world, pharmacist), {"expected_version": pharmacist.version, "reason": "x"}
        ).status_code
        == 403
    )
    assert role_of(world, world.pharmacist).pk == pharmacist.pk
