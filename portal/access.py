"""Who may see which patient in the portal: the one rule for portal pages, the API's
patient list and FHIR $everything.

- A patient account sees the one Patient whose `account` it is.
- A caregiver account sees a patient only while a consent in force (active, begun, not
  expired, not revoked) of scope "caregiver" names a current Caregiver row of that
  patient linked to the account. What it may do there is the consent's
  `caregiver_access` (view the plan; also message the team; also act for the patient);
  the highest of its consents counts. Revoking or expiring the consent ends access on the
  next request: nothing is cached beyond one request.
- Staff accounts see nothing here (they use the chart's "preview as patient").
- Anything else answers 404, the same as a missing patient."""

from __future__ import annotations

from dataclasses import dataclass

from django.core.exceptions import PermissionDenied
from django.db.models import Exists, OuterRef, Q, QuerySet
from django.http import Http404
from django.utils import timezone
from django.utils.translation import gettext as _

from careteam.models import AccountKind
from patients.models import (
    CAREGIVER_ACCESS_LEVELS,
    Caregiver,
    CaregiverAccess,
    Consent,
    ConsentScope,
    Patient,
)

PORTAL_KINDS = (AccountKind.PATIENT, AccountKind.CAREGIVER)

# what each capability needs: the patient always may; a caregiver needs this level
VIEW, MESSAGE, ACT, MANAGE_CAREGIVERS = "view", "message", "act", "manage-caregivers"
_NEEDED = {VIEW: CaregiverAccess.VIEW, MESSAGE: CaregiverAccess.MESSAGE, ACT: CaregiverAccess.ACT}


def is_portal_user(user) -> bool:
    return bool(getattr(user, "is_authenticated", False) and getattr(user, "kind", "") in PORTAL_KINDS)


def _active(user) -> bool:
    return bool(getattr(user, "is_authenticated", False) and getattr(user, "is_active", False))


def consents_in_force_for(user) -> QuerySet:
    """Caregiver consents in force that name a current caregiver row of this account."""
    today = timezone.localdate()
    return (
        Consent.objects.in_force(today)
        .filter(scope=ConsentScope.CAREGIVER, revoked_at__isnull=True, caregiver__account_id=user.pk)
        .filter(Q(caregiver__end_date__isnull=True) | Q(caregiver__end_date__gte=today))
    )


def portal_patients(user) -> QuerySet:
    """The patients this portal account may see now (none for staff or inactive accounts)."""
    if not _active(user) or not is_portal_user(user):
        return Patient.objects.none()
    if user.kind == AccountKind.PATIENT:
        return Patient.objects.filter(account_id=user.pk)
    consents = consents_in_force_for(user).filter(patient_id=OuterRef("pk"))
    return Patient.objects.filter(Exists(consents))


@dataclass
class PortalAccess:
    """What one portal account may do on one patient, computed once per request."""

    patient: Patient
    user: object
    caregiver: Caregiver | None = None
    level: str = ""  # a caregiver's CaregiverAccess; "" for the patient

    @property
    def is_patient(self) -> bool:
        return self.caregiver is None

    def may(self, what: str) -> bool:
        if self.is_patient:
            return True
        if what == MANAGE_CAREGIVERS:
            return False
        return CAREGIVER_ACCESS_LEVELS.get(self.level, 0) >= CAREGIVER_ACCESS_LEVELS[_NEEDED[what]]

    def require(self, what: str) -> None:
        if not self.may(what):
            raise PermissionDenied(_("The patient has not given you access to do this."))

    @property
    def sender_kind(self) -> str:
        return "patient" if self.is_patient else "caregiver"


def access_portal_patient(user, patient_id) -> PortalAccess:
    """The patient and the account's access to it; 404 when missing or not this
    account's to see (one answer, so existence never leaks)."""
    try:
        pk = int(patient_id)
    except (TypeError, ValueError):
        raise Http404("No such patient.") from None
    if not _active(user) or not is_portal_user(user):
        raise Http404("No such patient.")
    if user.kind == AccountKind.PATIENT:
        patient = Patient.objects.filter(pk=pk, account_id=user.pk).first()
        if patient is None:
            raise Http404("No such patient.")
        return PortalAccess(patient=patient, user=user)
    consents = list(consents_in_force_for(user).filter(patient_id=pk).select_related("caregiver__patient"))
    if not consents:
        raise Http404("No such patient.")
    best = max(consents, key=lambda c: CAREGIVER_ACCESS_LEVELS.get(c.caregiver_access, 0))
    return PortalAccess(
        patient=best.caregiver.patient, user=user, caregiver=best.caregiver, level=best.caregiver_access
    )


def portal_access_for_staff_preview(patient: Patient) -> PortalAccess:
    """The patient's own view, for the chart's "preview as patient" (read only)."""
    return PortalAccess(patient=patient, user=None)
