"""Community service catalog (aligned with Open Referral HSDS 3.0) and closed-loop
referrals (HL7 Gravity SDOH referral Task codes)."""

from __future__ import annotations

import uuid

from django.conf import settings
from django.contrib.postgres.fields import ArrayField
from django.contrib.postgres.indexes import GinIndex, OpClass
from django.contrib.postgres.search import SearchVector, SearchVectorField
from django.db import models
from django.db.models import Q
from django.db.models.functions import Upper
from django.utils import timezone

from careteam.concurrency import Versioned
from careteam.validators import validate_link


# ---------------------------------------------------------------------------
# Catalog (HSDS)
# ---------------------------------------------------------------------------
class Taxonomy(models.Model):
    """An HSDS taxonomy: the vocabulary taxonomy terms come from (its terms point at it
    by `TaxonomyTerm.taxonomy_id_ref`, which may name a taxonomy not in the catalog)."""

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    name = models.CharField(max_length=250)
    description = models.TextField(blank=True)
    uri = models.CharField(max_length=500, blank=True, validators=[validate_link])
    version = models.CharField(max_length=100, blank=True)
    details = models.JSONField(default=dict, blank=True, help_text="HSDS metadata records of the taxonomy.")
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["name"]
        verbose_name_plural = "taxonomies"

    def __str__(self) -> str:
        return self.name


class TaxonomyTerm(models.Model):
    """A category in the catalog's taxonomy (HSDS taxonomy_term)."""

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    code = models.CharField(max_length=60, blank=True)
    name = models.CharField(max_length=150)
    description = models.TextField(blank=True)
    synonyms = ArrayField(
        models.CharField(max_length=100),
        default=list,
        blank=True,
        help_text="Other words people search with (rides, bus, driver for Transportation).",
    )
    taxonomy = models.CharField(max_length=100, default="careteam", help_text="Name of the taxonomy")
    parent = models.ForeignKey(
        "self", on_delete=models.SET_NULL, null=True, blank=True, related_name="children"
    )
    language = models.CharField(max_length=20, blank=True)
    taxonomy_id_ref = models.UUIDField(
        null=True, blank=True, help_text="HSDS taxonomy_id: the taxonomy this term comes from."
    )
    term_uri = models.CharField(max_length=500, blank=True, validators=[validate_link])
    details = models.JSONField(
        default=dict, blank=True, help_text="HSDS sub-records kept as documents (taxonomy_detail, metadata)."
    )

    class Meta:
        ordering = ["name"]
        constraints = [
            # HSDS terms may come without a code; our own categories are looked up by code.
            models.UniqueConstraint(fields=["code"], condition=~Q(code=""), name="taxonomy_term_code_unique")
        ]

    def __str__(self) -> str:
        return self.name


DETAILS_HELP = (
    "HSDS sub-records of this object (phones, contacts, schedules, languages, ...) as HSDS JSON. "
    "They are kept whole so that export gives back what was imported; the columns used for search "
    "are derived from them on import."
)


class Organization(models.Model):
    """An HSDS organization: the provider of services."""

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    name = models.CharField(max_length=250)
    alternate_name = models.CharField(max_length=250, blank=True)
    description = models.TextField(blank=True)
    email = models.EmailField(blank=True)
    website = models.URLField(blank=True, validators=[validate_link])
    phone = models.CharField(max_length=40, blank=True)
    tax_id = models.CharField(max_length=40, blank=True)
    year_incorporated = models.PositiveSmallIntegerField(null=True, blank=True)
    legal_status = models.CharField(max_length=100, blank=True)
    tax_status = models.CharField(max_length=100, blank=True)
    logo = models.CharField(max_length=500, blank=True, validators=[validate_link])
    uri = models.CharField(max_length=500, blank=True, validators=[validate_link])
    parent_organization_id = models.UUIDField(null=True, blank=True)
    details = models.JSONField(default=dict, blank=True, help_text=DETAILS_HELP)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["name"]
        indexes = [models.Index(fields=["name"], name="organization_name_idx")]

    def __str__(self) -> str:
        return self.name


class ServiceStatus(models.TextChoices):
    ACTIVE = "active", "Active"
    INACTIVE = "inactive", "Inactive"
    DEFUNCT = "defunct", "Defunct"
    TEMPORARILY_CLOSED = "temporarily closed", "Temporarily closed"


class CapacityStatus(models.TextChoices):
    """Whether a service can take a new client now (HSDS 3.1 service_capacity, simplified)."""

    AVAILABLE = "available", "Taking new clients"
    WAITLIST = "waitlist", "Waitlist"
    FULL = "full", "Full"


class Service(models.Model):
    """An HSDS service. `languages`, `is_free`, `service_area` and `categories` are the
    search columns; import derives them from the HSDS sub-records in `details`."""

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    organization = models.ForeignKey(Organization, on_delete=models.CASCADE, related_name="services")
    name = models.CharField(max_length=250)
    alternate_name = models.CharField(max_length=250, blank=True)
    description = models.TextField(blank=True)
    url = models.URLField(blank=True, validators=[validate_link])
    email = models.EmailField(blank=True)
    phone = models.CharField(max_length=40, blank=True)
    status = models.CharField(max_length=20, choices=ServiceStatus.choices, default=ServiceStatus.ACTIVE)
    categories = models.ManyToManyField(TaxonomyTerm, blank=True, related_name="services")
    eligibility_description = models.TextField(blank=True)
    minimum_age = models.PositiveSmallIntegerField(null=True, blank=True)
    maximum_age = models.PositiveSmallIntegerField(null=True, blank=True)
    languages = ArrayField(models.CharField(max_length=20), default=list, blank=True)
    fees_description = models.TextField(blank=True)
    is_free = models.BooleanField(default=False)
    hours_description = models.TextField(blank=True)
    application_process = models.TextField(blank=True)
    service_area = models.TextField(
        blank=True, help_text="Where the service is offered, e.g. county or city names"
    )
    accessibility = models.TextField(blank=True)
    interpretation_services = models.TextField(blank=True)
    expected_response_days = models.PositiveSmallIntegerField(
        default=3, help_text="How long the service usually takes to respond to a referral."
    )
    last_verified = models.DateField(null=True, blank=True)
    wait_time = models.TextField(blank=True)
    fees = models.TextField(blank=True)
    accreditations = models.TextField(blank=True)
    assured_date = models.CharField(max_length=30, blank=True)
    assurer_email = models.CharField(max_length=254, blank=True)
    licenses = models.TextField(blank=True)
    alert = models.TextField(blank=True)
    last_modified = models.DateTimeField(null=True, blank=True)
    capacity_status = models.CharField(
        max_length=10, choices=CapacityStatus.choices, blank=True, help_text="Empty: not known."
    )
    capacity_available = models.PositiveIntegerField(
        null=True, blank=True, help_text="Places free now, when the service counts them."
    )
    capacity_maximum = models.PositiveIntegerField(null=True, blank=True)
    capacity_note = models.CharField(max_length=250, blank=True, help_text="e.g. 'about 3 weeks' wait'")
    capacity_updated_at = models.DateTimeField(null=True, blank=True)
    program_id = models.UUIDField(null=True, blank=True)
    details = models.JSONField(default=dict, blank=True, help_text=DETAILS_HELP)
    search_vector = models.GeneratedField(
        expression=SearchVector("name", weight="A", config="english")
        + SearchVector(
            "alternate_name", "description", "eligibility_description", weight="B", config="english"
        )
        + SearchVector("service_area", weight="C", config="english"),
        output_field=SearchVectorField(),
        db_persist=True,
    )
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["name"]
        constraints = [
            models.CheckConstraint(condition=Q(status__in=ServiceStatus.values), name="service_status_valid"),
            models.CheckConstraint(
                condition=Q(capacity_status__in=["", *CapacityStatus.values]), name="service_capacity_valid"
            ),
            models.CheckConstraint(
                condition=Q(minimum_age__isnull=True)
                | Q(maximum_age__isnull=True)
                | Q(maximum_age__gte=models.F("minimum_age")),
                name="service_age_range_valid",
            ),
        ]
        indexes = [
            models.Index(fields=["status", "name"], name="service_status_name_idx"),
            GinIndex(fields=["search_vector"], name="service_search_idx"),
            GinIndex(fields=["languages"], name="service_languages_idx"),
            # substring search of the service area (icontains is UPPER(...) LIKE on PostgreSQL)
            GinIndex(OpClass(Upper("service_area"), name="gin_trgm_ops"), name="service_area_trgm"),
        ]

    def __str__(self) -> str:
        return self.name

    @property
    def is_full(self) -> bool:
        return self.capacity_status == CapacityStatus.FULL


class Location(models.Model):
    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    organization = models.ForeignKey(
        Organization, on_delete=models.CASCADE, related_name="locations", null=True, blank=True
    )
    location_type = models.CharField(
        max_length=10,
        choices=[("physical", "Physical"), ("postal", "Postal"), ("virtual", "Virtual")],
        default="physical",
    )
    name = models.CharField(max_length=250, blank=True)
    description = models.TextField(blank=True)
    address_1 = models.CharField(max_length=200, blank=True)
    city = models.CharField(max_length=100, blank=True)
    state_province = models.CharField(max_length=100, blank=True)
    postal_code = models.CharField(max_length=20, blank=True)
    country = models.CharField(max_length=2, default="US")
    latitude = models.DecimalField(max_digits=9, decimal_places=6, null=True, blank=True)
    longitude = models.DecimalField(max_digits=9, decimal_places=6, null=True, blank=True)
    url = models.CharField(max_length=500, blank=True, validators=[validate_link])
    alternate_name = models.CharField(max_length=250, blank=True)
    transportation = models.TextField(blank=True)
    external_identifier = models.CharField(max_length=100, blank=True)
    external_identifier_type = models.CharField(max_length=100, blank=True)
    details = models.JSONField(default=dict, blank=True, help_text=DETAILS_HELP)

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name or self.address_1 or str(self.id)


class ServiceAtLocation(models.Model):
    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    service = models.ForeignKey(Service, on_delete=models.CASCADE, related_name="service_at_locations")
    location = models.ForeignKey(Location, on_delete=models.CASCADE, related_name="service_at_locations")
    description = models.TextField(blank=True)
    details = models.JSONField(default=dict, blank=True, help_text=DETAILS_HELP)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["service", "location"], name="service_at_location_unique")
        ]

    def __str__(self) -> str:
        return f"{self.service} at {self.location}"


# ---------------------------------------------------------------------------
# Proposed listing edits, reviewed by a catalog administrator before they publish
# ---------------------------------------------------------------------------
class ListingChangeStatus(models.TextChoices):
    PENDING = "pending", "Waiting for review"
    PUBLISHED = "published", "Published"
    REJECTED = "rejected", "Rejected"


LISTING_CHANGE_TRANSITIONS = {
    "pending": {"published", "rejected"},
    "published": set(),
    "rejected": set(),
}


class ListingChange(models.Model):
    """Edits someone proposed to a service's or an organization's listing (phones,
    hours, capacity, ...): `changes` holds the new values by field, `previous` the
    values when proposed (the review shows the difference); nothing reaches the listing
    until a catalog administrator publishes it."""

    service = models.ForeignKey(
        Service, on_delete=models.CASCADE, null=True, blank=True, related_name="listing_changes"
    )
    organization = models.ForeignKey(
        Organization, on_delete=models.CASCADE, null=True, blank=True, related_name="listing_changes"
    )
    changes = models.JSONField()
    previous = models.JSONField(default=dict)
    note = models.TextField(blank=True, help_text="Why, from the proposer.")
    status = models.CharField(
        max_length=10, choices=ListingChangeStatus.choices, default=ListingChangeStatus.PENDING
    )
    proposed_by = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="+")
    proposed_at = models.DateTimeField(default=timezone.now)
    reviewed_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.PROTECT, null=True, blank=True, related_name="+"
    )
    reviewed_at = models.DateTimeField(null=True, blank=True)
    review_note = models.TextField(blank=True)

    class Meta:
        ordering = ["-proposed_at", "-id"]
        constraints = [
            models.CheckConstraint(
                condition=Q(service__isnull=False, organization__isnull=True)
                | Q(service__isnull=True, organization__isnull=False),
                name="listing_change_one_listing",
            ),
            models.CheckConstraint(
                condition=Q(status__in=ListingChangeStatus.values), name="listing_change_status_valid"
            ),
        ]
        indexes = [models.Index(fields=["status", "proposed_at"], name="listing_change_status_idx")]

    def __str__(self) -> str:
        return f"Change #{self.pk} to {self.listing}"

    @property
    def listing(self):
        return self.service if self.service_id else self.organization


# ---------------------------------------------------------------------------
# Referrals (Gravity SDOH Task codes)
# ---------------------------------------------------------------------------
class ReferralStatus(models.TextChoices):
    DRAFT = "draft", "Draft"
    REQUESTED = "requested", "Requested"
    ACCEPTED = "accepted", "Accepted"
    REJECTED = "rejected", "Rejected"
    CANCELLED = "cancelled", "Cancelled"
    IN_PROGRESS = "in-progress", "In progress"
    ON_HOLD = "on-hold", "On hold"
    FAILED = "failed", "Failed"
    COMPLETED = "completed", "Completed"
    ENTERED_IN_ERROR = "entered-in-error", "Entered in error"


# Statuses a referral may hold without ever having been sent.
UNSENT_STATUSES = ["draft", "cancelled", "entered-in-error"]

REFERRAL_TRANSITIONS = {
    "draft": {"requested", "cancelled", "entered-in-error"},
    "requested": {"accepted", "rejected", "cancelled", "failed", "entered-in-error"},
    "accepted": {"in-progress", "on-hold", "cancelled", "failed", "completed", "entered-in-error"},
    "in-progress": {"on-hold", "completed", "failed", "cancelled", "entered-in-error"},
    "on-hold": {"in-progress", "cancelled", "failed", "entered-in-error"},
    # closed states reopen to 'requested' or 'in-progress' with a note (referral_reopen)
    "rejected": {"requested", "entered-in-error"},
    "cancelled": {"requested", "entered-in-error"},
    "failed": {"requested", "in-progress", "entered-in-error"},
    "completed": {"in-progress", "entered-in-error"},
    "entered-in-error": set(),
}
REFERRAL_CLOSED_STATUSES = ("rejected", "cancelled", "failed", "completed", "entered-in-error")
REFERRAL_OPEN_STATUSES = ("requested", "accepted", "in-progress", "on-hold")
# a second referral to the same service for the same need is refused while one of these stands
REFERRAL_DUPLICATE_STATUSES = ("draft", *REFERRAL_OPEN_STATUSES)


class ReferralOutcome(models.TextChoices):
    GOT_HELP = "got-help", "Got help"
    # a partner's answer when it completes a referral
    SERVICE_PROVIDED = "service-provided", "Service provided"
    PARTIALLY_PROVIDED = "partially-provided", "Service partly provided"
    NOT_PROVIDED = "not-provided", "Service not provided"
    COULD_NOT_CONTACT = "could-not-contact", "Could not contact"
    NOT_ELIGIBLE = "not-eligible", "Not eligible"
    NO_CAPACITY = "no-capacity", "No capacity"
    DECLINED = "declined", "Declined by patient"
    SERVICE_CLOSED = "service-closed", "Service closed"
    OTHER = "other", "Other"


class Referral(Versioned):
    """A referral of a patient to a community service (a Gravity SDOH referral Task).

    Most services are not on CareTeam, so `tracked_by_referrer` is the default: the
    referrer records the service's answers on its behalf. The model leaves room for a
    partner portal: a service's own staff would record the same status changes through
    `referral_set_status` under their own user, with `tracked_by_referrer` False."""

    patient = models.ForeignKey("patients.Patient", on_delete=models.CASCADE, related_name="referrals")
    care_plan = models.ForeignKey("careplans.CarePlan", on_delete=models.CASCADE, related_name="referrals")
    need = models.ForeignKey(
        "careplans.Need", on_delete=models.SET_NULL, related_name="referrals", null=True, blank=True
    )
    service = models.ForeignKey(Service, on_delete=models.PROTECT, related_name="referrals")
    reason = models.TextField()
    priority = models.CharField(
        max_length=10,
        choices=[("routine", "Routine"), ("urgent", "Urgent"), ("asap", "ASAP")],
        default="routine",
    )
    consent = models.ForeignKey(
        "patients.Consent", on_delete=models.PROTECT, null=True, blank=True, related_name="referrals"
    )
    status = models.CharField(max_length=20, choices=ReferralStatus.choices, default=ReferralStatus.DRAFT)
    status_reason = models.TextField(blank=True)
    referred_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="referrals_sent"
    )
    tracked_by_referrer = models.BooleanField(
        default=True, help_text="The service is not on CareTeam: the referrer records its answers."
    )
    sent_at = models.DateTimeField(null=True, blank=True)
    responded_at = models.DateTimeField(null=True, blank=True)
    accepted_at = models.DateTimeField(null=True, blank=True)
    closed_at = models.DateTimeField(null=True, blank=True)
    outcome = models.CharField(max_length=20, choices=ReferralOutcome.choices, blank=True)
    outcome_note = models.TextField(blank=True)
    created_at = models.DateTimeField(default=timezone.now)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["-created_at", "-id"]
        constraints = [
            models.CheckConstraint(
                condition=Q(status__in=ReferralStatus.values), name="referral_status_valid"
            ),
            models.CheckConstraint(
                # A draft, or a draft cancelled or entered in error before it was sent, has
                # neither consent nor a send time; every referral that went out has both.
                condition=Q(status__in=UNSENT_STATUSES) | Q(consent__isnull=False),
                name="referral_sent_with_consent",
                violation_error_message="A referral cannot be sent without the patient's recorded consent.",
            ),
            models.CheckConstraint(
                condition=Q(status__in=UNSENT_STATUSES) | Q(sent_at__isnull=False),
                name="referral_sent_has_sent_at",
            ),
        ]
        indexes = [
            models.Index(fields=["patient", "status"], name="referral_patient_idx"),
            models.Index(fields=["status", "sent_at"], name="referral_status_sent_idx"),
            models.Index(fields=["service", "status"], name="referral_service_idx"),
        ]

    def __str__(self) -> str:
        return f"Referral #{self.pk} to {self.service_id}"

    @property
    def is_closed(self) -> bool:
        return self.status in REFERRAL_CLOSED_STATUSES


class ReferralEvent(models.Model):
    """Every status change of a referral: who, when, from, to, and why."""

    referral = models.ForeignKey(Referral, on_delete=models.CASCADE, related_name="events")
    from_status = models.CharField(max_length=20, blank=True)
    to_status = models.CharField(max_length=20)
    by = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="+")
    at = models.DateTimeField(default=timezone.now)
    note = models.TextField(blank=True)

    class Meta:
        ordering = ["at", "id"]

    def __str__(self) -> str:
        return f"{self.from_status or '-'} -> {self.to_status}"


# ---------------------------------------------------------------------------
# Partner organisations: staff of an HSDS organisation answer its referrals
# ---------------------------------------------------------------------------
# Outcomes that count as help received: the need is resolved and the dashboard counts it.
HELP_RECEIVED_OUTCOMES = ("got-help", "service-provided")
# Why a partner declines a referral, and the outcome each records (the "other" needs text).
DECLINE_REASONS = {
    "not-eligible": ReferralOutcome.NOT_ELIGIBLE,
    "no-capacity": ReferralOutcome.NO_CAPACITY,
    "could-not-contact": ReferralOutcome.COULD_NOT_CONTACT,
    "declined": ReferralOutcome.DECLINED,
    "other": ReferralOutcome.OTHER,
}
COMPLETE_OUTCOMES = (
    ReferralOutcome.SERVICE_PROVIDED,
    ReferralOutcome.PARTIALLY_PROVIDED,
    ReferralOutcome.NOT_PROVIDED,
)


class PartnerStaff(models.Model):
    """A partner account (User.kind "partner") working for one HSDS organisation: it sees
    and answers the referrals sent to that organisation's services, nothing else."""

    user = models.OneToOneField(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="partner_staff"
    )
    organization = models.ForeignKey(Organization, on_delete=models.CASCADE, related_name="partner_staff")
    invited_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.PROTECT, null=True, blank=True, related_name="+"
    )
    invited_at = models.DateTimeField(default=timezone.now)
    active = models.BooleanField(default=True)

    class Meta:
        verbose_name_plural = "partner staff"
        indexes = [models.Index(fields=["organization", "active"], name="partner_staff_org_idx")]

    def __str__(self) -> str:
        return f"{self.user} at {self.organization}"


class ClaimStatus(models.TextChoices):
    PENDING = "pending", "Waiting for review"
    APPROVED = "approved", "Approved"
    REJECTED = "rejected", "Rejected"


class ListingClaim(models.Model):
    """Someone from an organisation asks for partner access to its listing; a catalog
    administrator approves it (which invites them) or rejects it."""

    organization = models.ForeignKey(Organization, on_delete=models.CASCADE, related_name="claims")
    name = models.CharField(max_length=150)
    email = models.EmailField()
    role = models.CharField(max_length=150, blank=True, help_text="Their role at the organisation.")
    note = models.TextField(blank=True)
    status = models.CharField(max_length=10, choices=ClaimStatus.choices, default=ClaimStatus.PENDING)
    created_at = models.DateTimeField(default=timezone.now)
    reviewed_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.PROTECT, null=True, blank=True, related_name="+"
    )
    reviewed_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at", "-id"]

    def __str__(self) -> str:
        return f"Claim of {self.organization} by {self.email}"


class ReferralMessage(models.Model):
    """The thread between the referrer's team and the partner on one referral (a request
    for more information and its answers). It carries no other patient data."""

    referral = models.ForeignKey(Referral, on_delete=models.CASCADE, related_name="messages")
    author = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="+")
    from_partner = models.BooleanField()
    text = models.TextField()
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["created_at", "id"]

    def __str__(self) -> str:
        return f"Message on referral {self.referral_id}"


class ReferralLink(models.Model):
    """A signed link to one referral emailed to a service without an account. The token
    signs (referral, nonce); each action works once through it (ReferralLinkUse), and it
    expires at `expires_at`."""

    referral = models.ForeignKey(Referral, on_delete=models.CASCADE, related_name="links")
    nonce = models.CharField(max_length=43, unique=True)
    email = models.EmailField()
    created_by = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="+")
    created_at = models.DateTimeField(default=timezone.now)
    expires_at = models.DateTimeField()
    revoked_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at", "-id"]

    def __str__(self) -> str:
        return f"Link to referral {self.referral_id} for {self.email}"


class ReferralLinkUse(models.Model):
    """One action taken through a link: the unique key lets each action happen once."""

    link = models.ForeignKey(ReferralLink, on_delete=models.CASCADE, related_name="uses")
    action = models.CharField(max_length=20)
    at = models.DateTimeField(default=timezone.now)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["link", "action"], name="referral_link_action_once")]

    def __str__(self) -> str:
        return f"{self.action} through link {self.link_id}"
