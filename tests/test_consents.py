"""Consent on the chart: recorded with how and by whom (optionally with the scanned form),
revoked with a reason, expired by date; a revoked consent stops referral sends; bad input
is a form error with nothing written; nobody off the team learns anything."""

from __future__ import annotations

import datetime as dt

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.test import Client
from django.urls import reverse
from django.utils import timezone

from careteam import services as team_services
from careteam.models import AuditEvent
from careteam.permissions import access_patient_by_id
from patients import services as patient_services
from patients.models import Consent, ConsentDocument
from referrals.models import Referral
from referrals.services import referral_consent
from tests import factories as f

pytestmark = pytest.mark.django_db

PDF = b"%PDF-1.4\n1 0 obj<<>>endobj\ntrailer<<>>\n%%EOF\n"


def signed_in(user) -> Client:
    client = Client()
    client.force_login(user)
    return client


def consents_url(patient) -> str:
    return reverse("patient_consents", kwargs={"patient_id": patient.pk})


def record(client, patient, **data):
    body = {
        "scope": "referral",
        "given_by": "patient",
        "method": "signed",
        "date_given": timezone.localdate().isoformat(),
        "expires_on": "",
        "note": "",
        **data,
    }
    return client.post(consents_url(patient), body)


def test_a_member_records_a_consent_with_its_signed_form(world):
    nurse = signed_in(world.nurse)
    upload = SimpleUploadedFile("signed-form.pdf", PDF, content_type="application/pdf")
    response = record(nurse, world.patient, document=upload)
    assert response.status_code == 302
    consent = Consent.objects.get(patient=world.patient)
    assert (consent.scope, consent.method, consent.recorded_by, consent.state) == (
        "referral",
        "signed",
        world.nurse,
        "in force",
    )
    document = ConsentDocument.objects.get(consent=consent)
    assert (document.content_type, document.size) == ("application/pdf", len(PDF))
    assert AuditEvent.objects.filter(
        action="create",
        object_type="patients.consent",
        object_id=str(consent.pk),
        patient_id=world.patient.pk,
    ).exists()
    page = nurse.get(consents_url(world.patient))
    assert b"In force" in page.content and b"Download" in page.content
    chart = nurse.get(reverse("patient_chart", kwargs={"patient_id": world.patient.pk}))
    assert b"Sharing information with community services" in chart.content
    download = nurse.get(
        reverse("patient_consent_document", kwargs={"patient_id": world.patient.pk, "consent_id": consent.pk})
    )
    assert download.status_code == 200 and download.content == PDF
    assert download["Content-Type"] == "application/pdf"
    assert download["Content-Disposition"].startswith("attachment")
    assert AuditEvent.objects.filter(
        action="export", object_id=str(consent.pk), detail="consent document"
    ).exists()


@pytest.mark.parametrize(
    ("data", "field"),
    [
        ({"scope": "nonsense"}, "scope"),
        ({"method": "telepathy"}, "method"),
        ({"date_given": "not a date"}, "date_given"),
        ({"date_given": (timezone.localdate() + dt.timedelta(days=3)).isoformat()}, "date_given"),
        ({"expires_on": (timezone.localdate() - dt.timedelta(days=3)).isoformat()}, "expires_on"),
        ({"scope": "caregiver"}, "caregiver"),
        ({"given_by": "x" * 151}, "given_by"),
        ({"note": "n" * 2001}, "note"),
    ],
)
def test_bad_input_is_a_form_error_and_writes_nothing(world, data, field):
    response = record(signed_in(world.nurse), world.patient, **data)
    assert response.status_code == 422
    assert field in response.context["form"].errors
    assert not Consent.objects.exists()


def test_a_caregiver_consent_names_a_current_caregiver_of_this_patient(world):
    mine = f.CaregiverFactory(patient=world.patient, name="José Team")
    theirs = f.CaregiverFactory(patient=world.other_patient, name="Somebody Else")
    nurse = signed_in(world.nurse)
    refused = record(nurse, world.patient, scope="caregiver", caregiver=str(theirs.pk))
    assert refused.status_code == 422 and "caregiver" in refused.context["form"].errors
    assert b"Somebody Else" not in refused.content
    refused = record(nurse, world.patient, scope="referral", caregiver=str(mine.pk))
    assert refused.status_code == 422 and "caregiver" in refused.context["form"].errors
    assert not Consent.objects.exists()
    assert record(nurse, world.patient, scope="caregiver", caregiver=str(mine.pk)).status_code == 302
    consent = Consent.objects.get()
    assert consent.caregiver == mine
    # ending the caregiver revokes the consent that named them
    access = access_patient_by_id(world.nurse, world.patient.pk)
    patient_services.caregiver_end(
        by=world.nurse, access=access, caregiver=mine, expected_version=mine.version
    )
    consent.refresh_from_db()
    assert consent.state == "revoked" and "caregiver" in consent.revoke_reason


@pytest.mark.parametrize(
    ("name", "content", "message"),
    [
        ("form.pdf", b"<script>alert(1)</script>", "PDF, PNG or JPEG"),
        ("form.exe", b"MZ\x90\x00", "PDF, PNG or JPEG"),
        ("huge.pdf", b"%PDF-" + b"0" * (5 * 1024 * 1024), "larger than 5 MB"),
    ],
)
def test_documents_are_checked_by_content_and_size(world, name, content, message):
    upload = SimpleUploadedFile(name, content, content_type="application/pdf")
    response = record(signed_in(world.nurse), world.patient, document=upload)
    assert response.status_code == 422
    assert message in " ".join(response.context["form"].errors["document"])
    assert not Consent.objects.exists() and not ConsentDocument.objects.exists()


def revoke(client, consent, reason="Patient asked by phone", version=None):
    return client.post(
        reverse(
            "patient_consent_revoke", kwargs={"patient_id": consent.patient_id, "consent_id": consent.pk}
        ),
        {f"r{consent.pk}-reason": reason, f"r{consent.pk}-expected_version": version or consent.version},
    )


def test_revoking_stops_referral_sends(world):
    consent = f.ConsentFactory(patient=world.patient, scope="referral")
    service = f.ServiceFactory(name="Eastside Food Pantry")
    nurse = signed_in(world.nurse)
    draft = nurse.post(
        reverse("referrals:new", kwargs={"plan_id": world.plan.pk}),
        {"service": str(service.pk), "reason": "No food at home", "priority": "routine"},
    )
    assert draft.status_code == 302
    referral = Referral.objects.get()
    assert revoke(nurse, consent).status_code == 302
    consent.refresh_from_db()
    assert consent.state == "revoked" and consent.revoked_by == world.nurse
    assert consent.revoke_reason == "Patient asked by phone"
    assert AuditEvent.objects.filter(detail="consent referral revoked", patient_id=world.patient.pk).exists()
    sent = nurse.post(
        reverse("referrals:status", kwargs={"referral_id": referral.pk}),
        {"status": "requested", "expected_version": referral.version},
    )
    assert sent.status_code == 422 and b"consent" in sent.content
    assert reverse("patient_consents", kwargs={"patient_id": world.patient.pk}).encode() in sent.content
    referral.refresh_from_db()
    assert referral.status == "draft" and referral.sent_at is None


def test_revoke_needs_a_reason_and_the_current_version(world):
    consent = f.ConsentFactory(patient=world.patient, scope="referral")
    nurse = signed_in(world.nurse)
    assert revoke(nurse, consent, reason="").status_code == 422
    stale = revoke(nurse, consent, version=consent.version + 5)
    assert stale.status_code == 409 and b"Someone changed this consent" in stale.content
    missing = nurse.post(
        reverse("patient_consent_revoke", kwargs={"patient_id": world.patient.pk, "consent_id": consent.pk}),
        {f"r{consent.pk}-reason": "Patient asked"},
    )
    assert missing.status_code == 428 and b"This page is out of date" in missing.content
    consent.refresh_from_db()
    assert consent.state == "in force"


def test_an_expired_consent_no_longer_counts(world):
    f.ConsentFactory(
        patient=world.patient,
        scope="referral",
        date_given=timezone.localdate() - dt.timedelta(days=400),
        expires_on=timezone.localdate() - dt.timedelta(days=1),
    )
    assert referral_consent(patient=world.patient) is None
    page = signed_in(world.nurse).get(consents_url(world.patient))
    assert b"Expired" in page.content


def test_off_the_team_nothing_is_revealed(world):
    consent = f.ConsentFactory(patient=world.patient, scope="referral", note="CONSENT-SECRET-NOTE")
    ConsentDocument.objects.create(
        consent=consent,
        name="f.pdf",
        content_type="application/pdf",
        size=len(PDF),
        data=PDF,
        uploaded_by=world.nurse,
    )
    outsider = signed_in(world.outsider)
    for url in (
        consents_url(world.patient),
        reverse(
            "patient_consent_document", kwargs={"patient_id": world.patient.pk, "consent_id": consent.pk}
        ),
    ):
        response = outsider.get(url)
        assert response.status_code == 404 and b"CONSENT-SECRET-NOTE" not in response.content
    assert revoke(outsider, consent).status_code == 404
    assert record(outsider, world.patient).status_code == 404
    # a consent id of another patient through this patient's URL is missing too
    other = f.ConsentFactory(patient=world.other_patient, scope="referral")
    assert revoke(signed_in(world.nurse), other).status_code == 404
    wrong = signed_in(world.nurse).post(
        reverse("patient_consent_revoke", kwargs={"patient_id": world.patient.pk, "consent_id": other.pk}),
        {f"r{other.pk}-reason": "x y z", f"r{other.pk}-expected_version": 1},
    )
    assert wrong.status_code == 404
    consent.refresh_from_db()
    other.refresh_from_db()
    assert consent.state == other.state == "in force"


def test_emergency_access_reads_consent_but_cannot_change_it(world):
    consent = f.ConsentFactory(patient=world.patient, scope="referral")
    team_services.emergency_access_open(
        by=world.outsider, patient=world.patient, reason="Unconscious in the ER"
    )
    glass = signed_in(world.outsider)
    assert glass.get(consents_url(world.patient)).status_code == 200
    assert record(glass, world.patient).status_code == 403
    assert revoke(glass, consent).status_code == 403
    consent.refresh_from_db()
    assert consent.state == "in force" and Consent.objects.count() == 1
