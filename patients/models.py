"""The patient, their preferences, family and caregivers, and consent records."""

from __future__ import annotations

import datetime as dt
import re

from django.conf import settings
from django.contrib.postgres.indexes import GinIndex, OpClass
from django.db import models
from django.db.models import F, Func, Q, Value
from django.db.models.functions import Upper
from django.utils import timezone
from simple_history.models import HistoricalRecords

from careteam.concurrency import Versioned


def normalise_mrn(mrn: str) -> str:
    """An MRN as stored and compared: no spaces, upper case."""
    return "".join((mrn or "").split()).upper()


class PatientStatus(models.TextChoices):
    ACTIVE = "active", "Active"
    INACTIVE = "inactive", "Inactive"
    DECEASED = "deceased", "Deceased"


class Acuity(models.TextChoices):
    """How much of a case manager's time a patient takes: the caseload's weight."""

    LOW = "low", "Low"
    MEDIUM = "medium", "Medium"
    HIGH = "high", "High"


# the load one patient adds to a caseload; a patient with no acuity set counts as low
ACUITY_WEIGHTS = {"": 1, Acuity.LOW: 1, Acuity.MEDIUM: 2, Acuity.HIGH: 3}


class AdministrativeGender(models.TextChoices):
    """FHIR administrative-gender."""

    MALE = "male", "Male"
    FEMALE = "female", "Female"
    OTHER = "other", "Other"
    UNKNOWN = "unknown", "Unknown"


def mrn_key(expression) -> Func:
    """An MRN reduced to its letters and digits, upper case: "mrn-4100 " -> "MRN4100"."""
    return Func(Upper(expression), Value("[^A-Z0-9]"), Value(""), Value("g"), function="regexp_replace")


def mrn_digits(expression) -> Func:
    """The digits of an MRN: "MRN-4100" -> "4100"."""
    return Func(expression, Value("[^0-9]"), Value(""), Value("g"), function="regexp_replace")


# typed digits shorter than this are not taken for an MRN (a "4" would match thousands)
MRN_MIN_DIGITS = 3


class PatientQuerySet(models.QuerySet):
    def search(self, text: str) -> PatientQuerySet:
        """Name or MRN contains the text (trigram indexes keep this fast). An MRN matches
        however it is typed: with or without its prefix, dashes, spaces or case
        ("4100", "mrn4100" and "MRN-4100" all find MRN-4100; expression indexes)."""
        text = (text or "").strip()
        if not text:
            return self
        key = re.sub(r"[^A-Z0-9]", "", text.upper())
        q = Q(mrn__iexact=text) | Q(family_name__icontains=text) | Q(given_name__icontains=text)
        qs = self
        if key:
            qs = qs.alias(mrn_key=mrn_key(F("mrn")))
            q |= Q(mrn_key=key)
            if key.isdigit() and len(key) >= MRN_MIN_DIGITS:
                qs = qs.alias(mrn_digits=mrn_digits(F("mrn")))
                q |= Q(mrn_digits=key)
        parts = text.split()
        if len(parts) > 1:
            q |= Q(given_name__icontains=parts[0], family_name__icontains=parts[-1])
        return qs.filter(q)


# The demographics a clinician enters and edits (the enrolment and edit forms, the REST
# API): one list, so a field added here reaches every door.
DEMOGRAPHIC_FIELDS = (
    "given_name",
    "family_name",
    "preferred_name",
    "birth_date",
    "gender",
    "preferred_language",
    "interpreter_needed",
    "phone",
    "email",
    "address_line",
    "city",
    "state",
    "postal_code",
    "preferences",
    "race",
    "ethnicity",
    "birth_sex",
)


class Race(models.TextChoices):
    """OMB race categories (US Core race), plus unknown and asked-but-declined."""

    AMERICAN_INDIAN = "1002-5", "American Indian or Alaska Native"
    ASIAN = "2028-9", "Asian"
    BLACK = "2054-5", "Black or African American"
    PACIFIC_ISLANDER = "2076-8", "Native Hawaiian or Other Pacific Islander"
    WHITE = "2106-3", "White"
    UNKNOWN = "UNK", "Unknown"
    DECLINED = "ASKU", "Asked but no answer"


class Ethnicity(models.TextChoices):
    """OMB ethnicity categories (US Core ethnicity)."""

    HISPANIC = "2135-2", "Hispanic or Latino"
    NOT_HISPANIC = "2186-5", "Not Hispanic or Latino"
    UNKNOWN = "UNK", "Unknown"
    DECLINED = "ASKU", "Asked but no answer"


class BirthSex(models.TextChoices):
    """US Core birth sex."""

    FEMALE = "F", "Female"
    MALE = "M", "Male"
    UNKNOWN = "UNK", "Unknown"


def validate_birth_date(value: dt.date) -> None:
    """A birth date is not in the future and not more than 130 years ago."""
    from django.core.exceptions import ValidationError

    if value > timezone.localdate():
        raise ValidationError("The birth date cannot be in the future.", code="future")
    if value.year < 1890:
        raise ValidationError("Check the birth date: it is more than 130 years ago.", code="implausible")


class Patient(Versioned):
    mrn = models.CharField("MRN", max_length=40, unique=True)
    given_name = models.CharField(max_length=100)
    family_name = models.CharField(max_length=100)
    preferred_name = models.CharField(max_length=100, blank=True)
    birth_date = models.DateField(validators=[validate_birth_date])
    gender = models.CharField(
        max_length=10, choices=AdministrativeGender.choices, default=AdministrativeGender.UNKNOWN
    )
    preferred_language = models.CharField(
        max_length=40, default="en", help_text="BCP-47 code, e.g. en, es, vi"
    )
    interpreter_needed = models.BooleanField(default=False)
    phone = models.CharField(max_length=40, blank=True)
    email = models.EmailField(blank=True)
    address_line = models.CharField(max_length=200, blank=True)
    city = models.CharField(max_length=100, blank=True)
    state = models.CharField(max_length=50, blank=True)
    postal_code = models.CharField(max_length=20, blank=True)
    status = models.CharField(max_length=10, choices=PatientStatus.choices, default=PatientStatus.ACTIVE)
    preferences = models.TextField(
        blank=True, help_text="What matters to the patient: their own words about care and goals."
    )
    acuity = models.CharField(
        max_length=10,
        choices=Acuity.choices,
        blank=True,
        default="",
        db_default="",
        help_text="Low, medium or high: the weight of this patient in a caseload (empty: not assessed).",
    )
    # optional, when known (US Core Patient race, ethnicity and birth sex)
    race = models.CharField(max_length=10, choices=Race.choices, blank=True, db_default="")
    ethnicity = models.CharField(max_length=10, choices=Ethnicity.choices, blank=True, db_default="")
    birth_sex = models.CharField(
        "sex assigned at birth", max_length=3, choices=BirthSex.choices, blank=True, db_default=""
    )
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)
    # the patient's own portal account (careteam.User of kind "patient"), once invited
    account = models.OneToOneField(
        settings.AUTH_USER_MODEL,
        on_delete=models.SET_NULL,
        null=True,
        blank=True,
        related_name="patient_record",
    )

    history = HistoricalRecords(excluded_fields=["updated_at", "account"])
    objects = PatientQuerySet.as_manager()

    class Meta:
        ordering = ["family_name", "given_name", "id"]
        permissions = [
            ("manage_team", "Can assign and end roles on the patient's care team"),
            ("edit_plan", "Can edit any item of the patient's care plan"),
        ]
        constraints = [
            models.CheckConstraint(condition=~Q(mrn=""), name="patient_mrn_not_blank"),
            models.CheckConstraint(condition=Q(status__in=PatientStatus.values), name="patient_status_valid"),
            models.CheckConstraint(condition=Q(acuity__in=["", *Acuity.values]), name="patient_acuity_valid"),
        ]
        indexes = [
            models.Index(Upper("family_name"), Upper("given_name"), name="patient_name_idx"),
            GinIndex(OpClass(Upper("family_name"), name="gin_trgm_ops"), name="patient_family_trgm"),
            GinIndex(OpClass(Upper("given_name"), name="gin_trgm_ops"), name="patient_given_trgm"),
            models.Index(mrn_key(F("mrn")), name="patient_mrn_key_idx"),
            models.Index(mrn_digits(F("mrn")), name="patient_mrn_digits_idx"),
        ]

    def __str__(self) -> str:
        return f"{self.family_name}, {self.given_name} ({self.mrn})"

    @property
    def full_name(self) -> str:
        return f"{self.given_name} {self.family_name}"

    def age(self, on: dt.date | None = None) -> int:
        on = on or timezone.localdate()
        b = self.birth_date
        return on.year - b.year - ((on.month, on.day) < (b.month, b.day))


class Relationship(models.TextChoices):
    SPOUSE = "spouse", "Spouse or partner"
    CHILD = "child", "Child"
    PARENT = "parent", "Parent"
    SIBLING = "sibling", "Sibling"
    FRIEND = "friend", "Friend"
    NEIGHBOUR = "neighbour", "Neighbour"
    GUARDIAN = "guardian", "Legal guardian"
    PAID_CARER = "paid-carer", "Paid carer"
    OTHER = "other", "Other"


class Caregiver(Versioned):
    """Family member or caregiver (FHIR RelatedPerson)."""

    patient = models.ForeignKey(Patient, on_delete=models.CASCADE, related_name="caregivers")
    name = models.CharField(max_length=150)
    relationship = models.CharField(max_length=20, choices=Relationship.choices)
    phone = models.CharField(max_length=40, blank=True)
    email = models.EmailField(blank=True)
    is_primary = models.BooleanField(default=False)
    lives_with_patient = models.BooleanField(default=False)
    may_receive_information = models.BooleanField(
        default=False, help_text="The patient agreed that this person may be told about their care."
    )
    notes = models.TextField(blank=True)
    may_contact = models.BooleanField(default=True, help_text="The team may phone or write to this person.")
    language = models.CharField(max_length=40, blank=True, help_text="BCP-47 code, e.g. en, es, vi")
    end_date = models.DateField(
        null=True, blank=True, help_text="No longer a caregiver from this date (kept in the history)."
    )
    # the caregiver's portal account (kind "caregiver"); one account may care for several
    # patients, one Caregiver row each. It sees a patient only while a consent in force
    # names this caregiver (portal.access).
    account = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        on_delete=models.SET_NULL,
        null=True,
        blank=True,
        related_name="caregiver_links",
    )

    history = HistoricalRecords(excluded_fields=["account"])

    class Meta:
        ordering = ["-is_primary", "name"]
        constraints = [
            models.UniqueConstraint(
                fields=["patient"], condition=Q(is_primary=True), name="one_primary_caregiver"
            )
        ]

    def __str__(self) -> str:
        return f"{self.name} ({self.get_relationship_display()})"


class ConsentScope(models.TextChoices):
    TREATMENT = "treatment", "Treatment"
    INFORMATION_SHARING = "information-sharing", "Sharing information with the care team"
    REFERRAL = "referral", "Sharing information with community services (referrals)"
    CAREGIVER = "caregiver", "Sharing information with a named caregiver"
    RESEARCH = "research", "Research"


class ConsentMethod(models.TextChoices):
    VERBAL = "verbal", "Verbal, witnessed by the recorder"
    SIGNED = "signed", "Signed form"
    PORTAL = "portal", "In the patient portal"


class ConsentStatus(models.TextChoices):
    """FHIR R4 Consent.status."""

    DRAFT = "draft", "Draft"
    PROPOSED = "proposed", "Proposed"
    ACTIVE = "active", "Active"
    REJECTED = "rejected", "Rejected"
    INACTIVE = "inactive", "Inactive"
    ENTERED_IN_ERROR = "entered-in-error", "Entered in error"


class CaregiverAccess(models.TextChoices):
    """What a caregiver consent lets the named caregiver do in the portal; each level
    includes the ones before it."""

    VIEW = "view", "View the plan"
    MESSAGE = "message", "View the plan and message the team"
    ACT = "act", "Act for the patient"


CAREGIVER_ACCESS_LEVELS = {CaregiverAccess.VIEW: 1, CaregiverAccess.MESSAGE: 2, CaregiverAccess.ACT: 3}


class ConsentQuerySet(models.QuerySet):
    def in_force(self, on: dt.date | None = None) -> ConsentQuerySet:
        on = on or timezone.localdate()
        return self.filter(status=ConsentStatus.ACTIVE, date_given__lte=on).filter(
            Q(expires_on__isnull=True) | Q(expires_on__gte=on)
        )


class Consent(Versioned):
    patient = models.ForeignKey(Patient, on_delete=models.CASCADE, related_name="consents")
    scope = models.CharField(max_length=30, choices=ConsentScope.choices)
    status = models.CharField(max_length=20, choices=ConsentStatus.choices, default=ConsentStatus.ACTIVE)
    date_given = models.DateField(default=timezone.localdate)
    expires_on = models.DateField(null=True, blank=True)
    given_by = models.CharField(
        max_length=150, default="patient", help_text="The patient, or the legal representative's name."
    )
    recorded_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="+", null=True, blank=True
    )
    method = models.CharField(
        "How it was given", max_length=10, choices=ConsentMethod.choices, default=ConsentMethod.VERBAL
    )
    caregiver = models.ForeignKey(
        "Caregiver",
        on_delete=models.PROTECT,
        null=True,
        blank=True,
        related_name="consents",
        help_text="The caregiver this consent names (scope: sharing with a named caregiver).",
    )
    caregiver_access = models.CharField(
        "What the caregiver may do in the portal",
        max_length=10,
        choices=CaregiverAccess.choices,
        default=CaregiverAccess.VIEW,
        db_default=CaregiverAccess.VIEW,
    )
    note = models.TextField(blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    revoked_at = models.DateTimeField(null=True, blank=True)
    revoked_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="+", null=True, blank=True
    )
    revoke_reason = models.CharField(max_length=500, blank=True)
    # referral consents: whether community services may contact the patient themselves
    share_contact = models.BooleanField(
        "Services may contact the patient",
        default=True,
        help_text="Referral consents: the receiving services see the patient's phone, email and address.",
    )
    contact_preferences = models.CharField(
        max_length=300,
        blank=True,
        help_text="How and when services should get in touch, e.g. “text after 5 pm”.",
    )

    objects = ConsentQuerySet.as_manager()
    history = HistoricalRecords()

    class Meta:
        ordering = ["-date_given", "-id"]
        constraints = [
            models.CheckConstraint(
                condition=Q(expires_on__isnull=True) | Q(expires_on__gte=models.F("date_given")),
                name="consent_expires_after_given",
            ),
            models.CheckConstraint(
                condition=Q(scope="caregiver", caregiver__isnull=False)
                | (~Q(scope="caregiver") & Q(caregiver__isnull=True)),
                name="consent_caregiver_iff_caregiver_scope",
            ),
            models.CheckConstraint(
                condition=Q(revoked_at__isnull=True) | Q(status="inactive"),
                name="consent_revoked_is_inactive",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.get_scope_display()}: {self.status}"

    @property
    def state(self) -> str:
        """In force, expired, revoked, not yet in force, or the FHIR status in words."""
        today = timezone.localdate()
        if self.revoked_at is not None:
            return "revoked"
        if self.status == ConsentStatus.PROPOSED:
            return "awaiting the patient's confirmation"
        if self.status != ConsentStatus.ACTIVE:
            return self.get_status_display().lower()
        if self.date_given > today:
            return "not yet in force"
        if self.expires_on is not None and self.expires_on < today:
            return "expired"
        return "in force"


CONSENT_DOCUMENT_TYPES = {
    "application/pdf": b"%PDF-",
    "image/png": b"\x89PNG\r\n\x1a\n",
    "image/jpeg": b"\xff\xd8\xff",
}
CONSENT_DOCUMENT_MAX_BYTES = 5 * 1024 * 1024


class ConsentDocument(models.Model):
    """The scanned or signed form of a consent. Kept in the database (at most 5 MB, PDF,
    PNG or JPEG by content): web processes stay stateless, backups hold it, and it is
    served only through the chart's permission check, never from a public media URL."""

    consent = models.OneToOneField(Consent, on_delete=models.CASCADE, related_name="document")
    name = models.CharField(max_length=200)
    content_type = models.CharField(max_length=40)
    size = models.PositiveIntegerField()
    data = models.BinaryField()
    uploaded_by = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="+")
    uploaded_at = models.DateTimeField(default=timezone.now)

    def __str__(self) -> str:
        return self.name


# ---------------------------------------------------------------------------
# Programmes and enrolment (case-management programmes a patient takes part in)
# ---------------------------------------------------------------------------
class Programme(models.Model):
    """A case-management programme (complex care, transitions, ...): admin-managed data."""

    code = models.SlugField(max_length=40, unique=True)
    name = models.CharField(max_length=120, unique=True)
    description = models.TextField(blank=True)
    active = models.BooleanField(default=True, help_text="Patients can be enrolled in it.")

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name


class ProgrammeExitReason(models.TextChoices):
    GOALS_MET = "goals-met", "Goals met"
    MOVED = "moved", "Moved away"
    DECLINED = "declined", "Declined to continue"
    DIED = "died", "Died"
    TRANSFERRED = "transferred", "Transferred to another programme or service"


class EnrolmentQuerySet(models.QuerySet):
    def open(self) -> EnrolmentQuerySet:
        return self.filter(exited_on__isnull=True)


class ProgrammeEnrolment(Versioned):
    """One patient's time in one programme: entered (date, reason), exited (date, reason)."""

    patient = models.ForeignKey(Patient, on_delete=models.CASCADE, related_name="enrolments")
    programme = models.ForeignKey(Programme, on_delete=models.PROTECT, related_name="enrolments")
    entered_on = models.DateField(default=timezone.localdate)
    entry_reason = models.CharField(max_length=300)
    entered_by = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="+")
    exited_on = models.DateField(null=True, blank=True)
    exit_reason = models.CharField(max_length=20, choices=ProgrammeExitReason.choices, blank=True)
    exit_note = models.CharField(max_length=300, blank=True)
    exited_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="+", null=True, blank=True
    )
    created_at = models.DateTimeField(auto_now_add=True)

    objects = EnrolmentQuerySet.as_manager()
    history = HistoricalRecords()

    class Meta:
        ordering = ["-entered_on", "-id"]
        constraints = [
            models.UniqueConstraint(
                fields=["patient", "programme"],
                condition=Q(exited_on__isnull=True),
                name="one_open_enrolment_per_programme",
                violation_error_message="The patient is already enrolled in this programme.",
            ),
            models.CheckConstraint(
                condition=Q(exited_on__isnull=True) | Q(exited_on__gte=F("entered_on")),
                name="enrolment_exit_after_entry",
            ),
            models.CheckConstraint(
                condition=Q(exited_on__isnull=True, exit_reason="")
                | (Q(exited_on__isnull=False) & Q(exit_reason__in=ProgrammeExitReason.values)),
                name="enrolment_exit_reason_iff_exited",
            ),
            models.CheckConstraint(condition=~Q(entry_reason=""), name="enrolment_entry_reason_required"),
        ]
        indexes = [models.Index(fields=["patient", "exited_on"], name="enrolment_patient_idx")]

    def __str__(self) -> str:
        return f"{self.programme} from {self.entered_on}"

    @property
    def is_open(self) -> bool:
        return self.exited_on is None
