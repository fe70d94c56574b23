"""Patients, caregivers and partners reach only their own pages: every staff page, the
staff API and the admin answer them 404, as a missing page would."""

import pytest

from careteam.models import AccountKind

from .factories import UserFactory

STAFF_PATHS = [
    "/",
    "/work/",
    "/patients/",
    "/team/caseloads/",
    "/api/v1/patients/",
    "/fhir/Patient",
    "/admin/",
]


@pytest.mark.django_db
@pytest.mark.parametrize("kind", [AccountKind.PATIENT, AccountKind.CAREGIVER, AccountKind.PARTNER])
@pytest.mark.parametrize("path", STAFF_PATHS)
def test_a_non_staff_account_gets_404_on_staff_pages(client, kind, path):
    client.force_login(UserFactory(kind=kind))
    response = client.get(path)
    if path == "/":
        # their front door is the portal, or the partner inbox
        home = "/partner/" if kind == AccountKind.PARTNER else "/portal/"
        assert response.status_code == 302 and response["Location"] == home
    elif kind in (AccountKind.PATIENT, AccountKind.CAREGIVER) and path == "/api/v1/patients/":
        # the patient-access contract: only their own (here: none) (tests/test_portal.py)
        assert response.status_code == 200 and response.json()["count"] == 0
    else:
        assert response.status_code == 404


@pytest.mark.django_db
@pytest.mark.parametrize("kind", [AccountKind.PATIENT, AccountKind.PARTNER])
def test_a_non_staff_account_keeps_its_account_pages(client, kind):
    client.force_login(UserFactory(kind=kind))
    assert client.get("/accounts/settings/").status_code == 200
    assert client.post("/accounts/logout/").status_code == 302


@pytest.mark.django_db
def test_new_accounts_are_staff(client):
    assert UserFactory().kind == AccountKind.STAFF


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("kind", "home"), [(AccountKind.PATIENT, "/portal/"), (AccountKind.PARTNER, "/partner/")]
)
def test_the_site_root_takes_each_kind_home(client, kind, home):
    client.force_login(UserFactory(kind=kind))
    response = client.get("/")
    assert response.status_code == 302 and response["Location"] == home
