"""The schedule the team works to and the approvals that pay for it: visits (FHIR
Appointment, and Encounter once completed), service authorisations, the hand-on rules
that turn an event into the next piece of work, and per-clinician calendar feeds."""

from __future__ import annotations

import datetime as dt
import zoneinfo

from django.conf import settings
from django.core.exceptions import ValidationError
from django.core.validators import MaxValueValidator, MinValueValidator
from django.db import models
from django.db.models import F, Q
from django.utils import timezone
from simple_history.models import HistoricalRecords

from careteam.concurrency import Versioned

REASON_MAX_LENGTH = 300
# the longest visit a calendar takes (a day); a longer one is a typo
VISIT_MAX_MINUTES = 12 * 60


def validate_time_zone(value: str) -> None:
    """An IANA time zone name (Europe/Berlin, America/Chicago)."""
    try:
        zoneinfo.ZoneInfo(value)
    except (zoneinfo.ZoneInfoNotFoundError, ValueError, TypeError):
        raise ValidationError(f"'{value}' is not a time zone name (e.g. Europe/London).") from None


# ---------------------------------------------------------------------------
# Service authorisations
# ---------------------------------------------------------------------------
class AuthorisationStatus(models.TextChoices):
    REQUESTED = "requested", "Requested"
    APPROVED = "approved", "Approved"
    DENIED = "denied", "Denied"
    EXPIRED = "expired", "Expired"
    EXHAUSTED = "exhausted", "Exhausted"


AUTHORISATION_TRANSITIONS = {
    "requested": {"approved", "denied"},
    # exhausted is reached by using the last unit; more units approved make it usable again
    "approved": {"expired", "exhausted"},
    "exhausted": {"approved", "expired"},
    # a denial may be appealed: the request is answered again
    "denied": {"requested"},
    "expired": set(),
}
AUTHORISATION_INITIAL_STATUSES = frozenset({"requested", "approved"})
# what a visit may draw on
AUTHORISATION_USABLE = ("approved",)


class UnitKind(models.TextChoices):
    VISIT = "visit", "Visits"
    UNIT = "unit", "Units"


class Authorisation(Versioned):
    """A payer's approval of a service for a patient: what, by whom, how much and for
    how long. Units used are counted from the completed visits that draw on it
    (`visits.services.authorisation_recount`), never typed in."""

    patient = models.ForeignKey("patients.Patient", on_delete=models.CASCADE, related_name="authorisations")
    care_plan = models.ForeignKey(
        "careplans.CarePlan", on_delete=models.SET_NULL, null=True, blank=True, related_name="authorisations"
    )
    payer = models.CharField(max_length=200)
    service = models.CharField(max_length=200, help_text="What is authorised, e.g. Physiotherapy at home")
    discipline = models.ForeignKey(
        "careteam.Discipline", on_delete=models.PROTECT, related_name="+", help_text="Provided by"
    )
    provider_name = models.CharField(max_length=200, blank=True, help_text="An outside provider, if any")
    unit_kind = models.CharField(max_length=10, choices=UnitKind.choices, default=UnitKind.VISIT)
    units_authorised = models.PositiveIntegerField(validators=[MinValueValidator(1)])
    units_used = models.PositiveIntegerField(default=0, editable=False)
    start_date = models.DateField()
    end_date = models.DateField()
    reference_number = models.CharField(max_length=100, blank=True)
    status = models.CharField(
        max_length=20, choices=AuthorisationStatus.choices, default=AuthorisationStatus.REQUESTED
    )
    status_reason = models.CharField(max_length=REASON_MAX_LENGTH, blank=True)
    requested_at = models.DateTimeField(default=timezone.now)
    decided_at = models.DateTimeField(null=True, blank=True)
    decided_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.PROTECT, null=True, blank=True, related_name="+"
    )
    exhausted_at = models.DateTimeField(null=True, blank=True)
    # set by the reminder sweep when the end date has passed (visits.services.authorisations_expire)
    expired_at = models.DateTimeField(null=True, blank=True, editable=False)
    created_by = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="+")
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    history = HistoricalRecords(excluded_fields=["updated_at"])

    class Meta:
        ordering = ["-start_date", "-id"]
        constraints = [
            models.CheckConstraint(
                condition=Q(status__in=AuthorisationStatus.values), name="authorisation_status_valid"
            ),
            models.CheckConstraint(
                condition=Q(end_date__gte=F("start_date")), name="authorisation_end_after_start"
            ),
            models.CheckConstraint(condition=Q(units_authorised__gte=1), name="authorisation_units_positive"),
            models.CheckConstraint(condition=~Q(payer=""), name="authorisation_payer_required"),
        ]
        indexes = [
            models.Index(fields=["patient", "status"], name="authorisation_patient_idx"),
            models.Index(
                fields=["end_date"], name="authorisation_open_end_idx", condition=Q(status="approved")
            ),
            models.Index(
                fields=["requested_at"], name="authorisation_requested_idx", condition=Q(status="requested")
            ),
        ]

    def __str__(self) -> str:
        return f"{self.service} ({self.payer})"

    @property
    def units_left(self) -> int:
        return max(self.units_authorised - self.units_used, 0)

    def covers(self, on: dt.date) -> bool:
        return self.start_date <= on <= self.end_date


class AuthorisationDocument(models.Model):
    """A letter or form of an authorisation (PDF, PNG or JPEG by content, at most 5 MB),
    kept in the database and served only through the patient's access check, like a
    consent's signed form."""

    authorisation = models.ForeignKey(Authorisation, on_delete=models.CASCADE, related_name="documents")
    name = models.CharField(max_length=200)
    content_type = models.CharField(max_length=40)
    size = models.PositiveIntegerField()
    data = models.BinaryField()
    uploaded_by = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="+")
    uploaded_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["uploaded_at", "id"]

    def __str__(self) -> str:
        return self.name


# ---------------------------------------------------------------------------
# Visits (FHIR Appointment; Encounter once completed)
# ---------------------------------------------------------------------------
class VisitType(models.TextChoices):
    HOME = "home", "Home visit"
    CLINIC = "clinic", "Clinic"
    TELEHEALTH = "telehealth", "Telehealth"
    PHONE = "phone", "Phone"


class VisitStatus(models.TextChoices):
    """FHIR Appointment.status codes, with the words the team uses."""

    BOOKED = "booked", "Booked"
    ARRIVED = "arrived", "Arrived"
    FULFILLED = "fulfilled", "Completed"
    NOSHOW = "noshow", "Missed"
    CANCELLED = "cancelled", "Cancelled"


VISIT_TRANSITIONS = {
    "booked": {"arrived", "fulfilled", "noshow", "cancelled"},
    "arrived": {"fulfilled", "cancelled"},
    "fulfilled": set(),
    "noshow": set(),
    "cancelled": set(),
}
VISIT_INITIAL_STATUSES = frozenset({"booked"})
# a visit that still takes a place in the calendar
VISIT_OPEN_STATUSES = ("booked", "arrived")
# these say why (kept with the visit and shown in its history)
VISIT_STATUSES_NEEDING_REASON = frozenset({"cancelled", "noshow"})
# what may be rebooked: the new visit carries the chain back to this one
VISIT_REBOOKABLE = frozenset({"booked", "noshow", "cancelled"})


class VisitQuerySet(models.QuerySet):
    def in_window(self, start: dt.datetime, end: dt.datetime) -> VisitQuerySet:
        return self.filter(start__lt=end, end__gt=start)


class Visit(Versioned):
    """One booked visit of one patient with a team member or an outside provider."""

    patient = models.ForeignKey("patients.Patient", on_delete=models.CASCADE, related_name="visits")
    care_plan = models.ForeignKey(
        "careplans.CarePlan", on_delete=models.SET_NULL, null=True, blank=True, related_name="visits"
    )
    activities = models.ManyToManyField("careplans.Activity", blank=True, related_name="visits")
    referral = models.ForeignKey(
        "referrals.Referral", on_delete=models.SET_NULL, null=True, blank=True, related_name="visits"
    )
    authorisation = models.ForeignKey(
        Authorisation, on_delete=models.PROTECT, null=True, blank=True, related_name="visits"
    )
    visit_type = models.CharField(max_length=12, choices=VisitType.choices, default=VisitType.HOME)
    clinician = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.PROTECT, null=True, blank=True, related_name="visits"
    )
    provider_name = models.CharField(max_length=200, blank=True, help_text="An outside provider, by name")
    discipline = models.ForeignKey(
        "careteam.Discipline", on_delete=models.PROTECT, null=True, blank=True, related_name="+"
    )
    start = models.DateTimeField()
    duration_minutes = models.PositiveSmallIntegerField(
        default=60, validators=[MinValueValidator(5), MaxValueValidator(VISIT_MAX_MINUTES)]
    )
    # kept in the row so calendars query a time range by index
    end = models.DateTimeField(editable=False, db_column="ends_at")  # END is an SQL keyword
    time_zone = models.CharField(max_length=60, default="UTC", validators=[validate_time_zone])
    location = models.CharField(max_length=300, blank=True)
    units = models.PositiveSmallIntegerField(
        default=1,
        validators=[MinValueValidator(1)],
        help_text="Units of the authorisation a completed visit uses",
    )
    status = models.CharField(max_length=12, choices=VisitStatus.choices, default=VisitStatus.BOOKED)
    status_reason = models.CharField(max_length=REASON_MAX_LENGTH, blank=True)
    status_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.PROTECT, null=True, blank=True, related_name="+"
    )
    status_at = models.DateTimeField(null=True, blank=True)
    rebooked_from = models.OneToOneField(
        "self", on_delete=models.SET_NULL, null=True, blank=True, related_name="rebooked_as"
    )
    created_by = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="+")
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    objects = VisitQuerySet.as_manager()
    history = HistoricalRecords(excluded_fields=["updated_at"], m2m_fields=[activities])

    class Meta:
        ordering = ["start", "id"]
        constraints = [
            models.CheckConstraint(condition=Q(status__in=VisitStatus.values), name="visit_status_valid"),
            models.CheckConstraint(condition=Q(visit_type__in=VisitType.values), name="visit_type_valid"),
            models.CheckConstraint(condition=Q(end__gt=F("start")), name="visit_end_after_start"),
            # bounded, so an overlap search may start VISIT_MAX_MINUTES before the visit
            models.CheckConstraint(
                condition=Q(end__lte=F("start") + dt.timedelta(minutes=VISIT_MAX_MINUTES)),
                name="visit_duration_bounded",
            ),
            models.CheckConstraint(
                condition=Q(clinician__isnull=False) | ~Q(provider_name=""), name="visit_has_someone"
            ),
            models.CheckConstraint(condition=Q(units__gte=1), name="visit_units_positive"),
        ]
        indexes = [
            models.Index(fields=["clinician", "start"], name="visit_clinician_idx"),
            models.Index(fields=["patient", "start"], name="visit_patient_idx"),
            models.Index(fields=["authorisation", "status"], name="visit_authorisation_idx"),
            models.Index(fields=["start"], name="visit_booked_start_idx", condition=Q(status="booked")),
        ]

    def __str__(self) -> str:
        return f"{self.get_visit_type_display()} at {self.start:%Y-%m-%d %H:%M}"

    def save(self, *args, **kwargs):
        if self.start is not None and self.duration_minutes:
            self.end = self.start + dt.timedelta(minutes=int(self.duration_minutes))
        super().save(*args, **kwargs)

    @property
    def who(self) -> str:
        return self.clinician.display_name if self.clinician_id else self.provider_name

    def local_start(self) -> dt.datetime:
        return timezone.localtime(self.start, zoneinfo.ZoneInfo(self.time_zone or "UTC"))

    def local_end(self) -> dt.datetime:
        return timezone.localtime(self.end, zoneinfo.ZoneInfo(self.time_zone or "UTC"))


# ---------------------------------------------------------------------------
# Rules that hand on the work
# ---------------------------------------------------------------------------
class RuleEvent(models.TextChoices):
    AUTHORISATION_APPROVED = "authorisation.approved", "An authorisation is approved"
    REFERRAL_ACCEPTED = "referral.accepted", "A referral is accepted"
    DISCHARGE_RECORDED = "discharge.recorded", "A discharge is recorded"
    VISIT_MISSED = "visit.missed", "A visit is missed"


class RuleAssignee(models.TextChoices):
    QUEUE = "queue", "The discipline (its one team member, else its queue)"
    REFERRER = "referrer", "Whoever made the referral"
    ACTOR = "actor", "Whoever caused the event"


class HandOnRule(models.Model):
    """When `event` happens (and its conditions hold), create an activity on the
    patient's active plan for a discipline, due a number of days later. Admin-managed
    data: the same event fires a rule once (`RuleFiring`)."""

    name = models.CharField(max_length=200)
    event = models.CharField(max_length=40, choices=RuleEvent.choices)
    active = models.BooleanField(default=True)
    # conditions (empty: any)
    condition_discipline = models.ForeignKey(
        "careteam.Discipline",
        on_delete=models.PROTECT,
        null=True,
        blank=True,
        related_name="+",
        help_text="Only for authorisations or visits of this discipline",
    )
    condition_template = models.SlugField(
        max_length=80, blank=True, help_text="Only on plans a template with this slug was applied to"
    )
    # the action: an activity
    activity_title = models.CharField(max_length=200)
    activity_description = models.TextField(blank=True)
    owner_discipline = models.ForeignKey(
        "careteam.Discipline",
        on_delete=models.PROTECT,
        null=True,
        blank=True,
        related_name="+",
        help_text="Empty: the discipline of the assignee (referrer or actor)",
    )
    assignee = models.CharField(max_length=10, choices=RuleAssignee.choices, default=RuleAssignee.QUEUE)
    due_in_days = models.PositiveSmallIntegerField(default=2, validators=[MaxValueValidator(365)])
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["event", "name", "id"]
        constraints = [
            models.CheckConstraint(condition=Q(event__in=RuleEvent.values), name="handon_rule_event_valid"),
            models.CheckConstraint(
                condition=~Q(assignee="queue") | Q(owner_discipline__isnull=False),
                name="handon_rule_queue_has_discipline",
                violation_error_message="A rule for a discipline's queue names the discipline.",
            ),
        ]

    def __str__(self) -> str:
        return self.name


class RuleFiring(models.Model):
    """One rule fired for one event on one object. The unique key is what makes a rule
    fire once for an event, even when the event is saved twice at the same moment."""

    rule = models.ForeignKey(HandOnRule, on_delete=models.CASCADE, related_name="firings")
    event = models.CharField(max_length=40)
    object_type = models.CharField(max_length=60)
    object_id = models.BigIntegerField()
    patient = models.ForeignKey("patients.Patient", on_delete=models.CASCADE, related_name="+")
    care_plan = models.ForeignKey(
        "careplans.CarePlan", on_delete=models.SET_NULL, null=True, blank=True, related_name="+"
    )
    activity = models.ForeignKey(
        "careplans.Activity", on_delete=models.SET_NULL, null=True, blank=True, related_name="+"
    )
    outcome = models.CharField(max_length=300, blank=True)
    fired_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.PROTECT, null=True, blank=True, related_name="+"
    )
    fired_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["-fired_at", "-id"]
        constraints = [
            models.UniqueConstraint(
                fields=["rule", "event", "object_type", "object_id"], name="one_firing_per_rule_event"
            )
        ]

    def __str__(self) -> str:
        return f"{self.rule} on {self.event} {self.object_type} {self.object_id}"


# ---------------------------------------------------------------------------
# Calendar feeds
# ---------------------------------------------------------------------------
class CalendarFeed(models.Model):
    """A clinician's secret iCalendar address. Only the SHA-256 of the secret is stored;
    revoking (or issuing a new one) stops the old address at once."""

    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="calendar_feeds"
    )
    token_digest = models.CharField(max_length=64, unique=True)
    created_at = models.DateTimeField(default=timezone.now)
    revoked_at = models.DateTimeField(null=True, blank=True)
    last_used_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at", "-id"]
        constraints = [
            models.UniqueConstraint(
                fields=["user"], condition=Q(revoked_at__isnull=True), name="one_live_calendar_feed_per_user"
            )
        ]

    def __str__(self) -> str:
        return f"Calendar feed of {self.user}"
