"""Care-team models: users, their preferences and disciplines, team memberships, handoffs,
access policy, emergency access grants, audit events, notifications and digests."""

from __future__ import annotations

import datetime as dt

from django.conf import settings
from django.contrib.auth.models import AbstractUser
from django.contrib.postgres.fields import ArrayField
from django.contrib.postgres.indexes import GinIndex
from django.db import models
from django.db.models import Func, Q
from django.db.models.lookups import LessThanOrEqual
from django.utils import timezone
from guardian.models import GroupObjectPermissionBase, UserObjectPermissionBase

from careteam.concurrency import Versioned


# ---------------------------------------------------------------------------
# Disciplines and users
# ---------------------------------------------------------------------------
class Discipline(models.Model):
    """A clinical discipline (physician, nursing, social work, ...)."""

    code = models.SlugField(max_length=40, unique=True)
    name = models.CharField(max_length=100, unique=True)

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name


class AccountKind(models.TextChoices):
    """Who an account belongs to. Staff use the clinical pages and the staff API; patients
    and caregivers only the portal; partners (staff of a community organisation) only the
    partner pages. `AccountKindMiddleware` keeps each kind to its own paths."""

    STAFF = "staff", "Staff"
    PATIENT = "patient", "Patient"
    CAREGIVER = "caregiver", "Caregiver"
    PARTNER = "partner", "Community partner"


class User(AbstractUser):
    """A person using CareTeam; clinicians hold one or more disciplines."""

    kind = models.CharField(
        max_length=12, choices=AccountKind.choices, default=AccountKind.STAFF, db_default=AccountKind.STAFF
    )
    disciplines = models.ManyToManyField(Discipline, blank=True, related_name="users")
    title = models.CharField(max_length=100, blank=True, help_text="e.g. RN, MD, MSW")
    phone = models.CharField(max_length=40, blank=True)

    class Meta:
        permissions = [
            ("manage_catalog", "Can manage the community service catalog"),
            ("view_audit_log", "Can search the audit log"),
            ("supervise_caseloads", "Can see every case manager's caseload and reassign patients"),
        ]

    def __str__(self) -> str:
        full = self.get_full_name()
        return f"{full} ({self.username})" if full else self.username

    @property
    def display_name(self) -> str:
        return self.get_full_name() or self.username

    @property
    def is_staff_account(self) -> bool:
        return self.kind == AccountKind.STAFF


class UserPreference(models.Model):
    """A person's own settings (the settings page, beside two-factor sign-in): their time
    zone and the end-of-day digest, sent at `digest_time` of their local day."""

    user = models.OneToOneField(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, primary_key=True, related_name="preference"
    )
    # an IANA zone name PostgreSQL knows (the sweep computes the local day in SQL);
    # checked by careteam.digest.preference_update
    time_zone = models.CharField(max_length=64, default="UTC")
    digest_enabled = models.BooleanField(default=False)
    digest_time = models.TimeField(default=dt.time(17, 0))
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        indexes = [
            models.Index(fields=["user"], name="preference_digest_idx", condition=Q(digest_enabled=True))
        ]

    def __str__(self) -> str:
        return f"Preferences of {self.user_id}"


# ---------------------------------------------------------------------------
# Team memberships (FHIR CareTeam.participant)
# ---------------------------------------------------------------------------
class TeamRole(models.TextChoices):
    LEAD = "lead", "Lead"
    CASE_MANAGER = "case-manager", "Case manager"
    MEMBER = "member", "Member"


class MembershipStatus(models.TextChoices):
    """FHIR R4 CareTeam.status codes."""

    PROPOSED = "proposed", "Proposed"
    ACTIVE = "active", "Active"
    SUSPENDED = "suspended", "Suspended"
    INACTIVE = "inactive", "Inactive"
    ENTERED_IN_ERROR = "entered-in-error", "Entered in error"


MEMBERSHIP_TRANSITIONS = {
    "proposed": {"active", "inactive", "entered-in-error"},
    "active": {"suspended", "inactive", "entered-in-error"},
    "suspended": {"active", "inactive", "entered-in-error"},
    "inactive": {"entered-in-error"},
    "entered-in-error": set(),
}


class TeamMembershipQuerySet(models.QuerySet):
    def current(self, on: dt.date | None = None) -> TeamMembershipQuerySet:
        """Memberships active today: status active and the date inside the period."""
        on = on or timezone.localdate()
        return self.filter(status=MembershipStatus.ACTIVE, start_date__lte=on).filter(
            Q(end_date__isnull=True) | Q(end_date__gte=on)
        )


class TeamMembership(Versioned):
    """A person's role on one patient's care team, for a period."""

    patient = models.ForeignKey("patients.Patient", on_delete=models.CASCADE, related_name="memberships")
    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="memberships")
    discipline = models.ForeignKey(Discipline, on_delete=models.PROTECT, related_name="+")
    role = models.CharField(max_length=20, choices=TeamRole.choices, default=TeamRole.MEMBER)
    status = models.CharField(
        max_length=20, choices=MembershipStatus.choices, default=MembershipStatus.ACTIVE
    )
    start_date = models.DateField(default=timezone.localdate)
    end_date = models.DateField(null=True, blank=True)
    # set on the time-limited memberships a cover period adds (careteam.caseloads.cover_create)
    cover = models.ForeignKey(
        "Cover", on_delete=models.PROTECT, null=True, blank=True, related_name="memberships"
    )
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    objects = TeamMembershipQuerySet.as_manager()

    class Meta:
        ordering = ["patient_id", "role", "start_date"]
        constraints = [
            models.CheckConstraint(
                condition=Q(end_date__isnull=True) | Q(end_date__gte=models.F("start_date")),
                name="membership_end_after_start",
            ),
            models.CheckConstraint(
                condition=Q(status__in=MembershipStatus.values), name="membership_status_valid"
            ),
            models.CheckConstraint(condition=Q(role__in=TeamRole.values), name="membership_role_valid"),
            models.UniqueConstraint(
                fields=["patient"],
                condition=Q(role="case-manager", status="active"),
                name="one_active_case_manager_per_patient",
                violation_error_message="This patient already has an active case manager.",
            ),
            models.UniqueConstraint(
                fields=["patient", "user", "discipline"],
                condition=Q(status="active"),
                name="one_active_membership_per_user_discipline",
                violation_error_message="This person already has an active role in this discipline on this team.",
            ),
        ]
        indexes = [
            models.Index(fields=["user", "status", "patient"], name="membership_user_idx"),
            models.Index(fields=["patient", "status"], name="membership_patient_idx"),
        ]

    def __str__(self) -> str:
        return f"{self.user} as {self.get_role_display()} ({self.discipline}) for {self.patient}"

    def is_current(self, on: dt.date | None = None) -> bool:
        on = on or timezone.localdate()
        return (
            self.status == MembershipStatus.ACTIVE
            and self.start_date <= on
            and (self.end_date is None or self.end_date >= on)
        )


# ---------------------------------------------------------------------------
# Cover: a colleague of the same discipline receives an absent clinician's work
# ---------------------------------------------------------------------------
class CoverStatus(models.TextChoices):
    ACTIVE = "active", "Active"
    CANCELLED = "cancelled", "Cancelled"


class CoverQuerySet(models.QuerySet):
    def in_force(self, on: dt.date | None = None) -> CoverQuerySet:
        """Cover periods that route work today (dates inclusive)."""
        on = on or timezone.localdate()
        return self.filter(status=CoverStatus.ACTIVE, start_date__lte=on, end_date__gte=on)


class Cover(Versioned):
    """While `absent` is away (start to end date, inclusive) `colleague`, of the same
    discipline, receives their handoffs, My work, reminders and mentions, and is on
    their patients' teams as a time-limited member (careteam/cover.py is the rule)."""

    absent = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="covers")
    colleague = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="covering")
    discipline = models.ForeignKey(Discipline, on_delete=models.PROTECT, related_name="+")
    start_date = models.DateField()
    end_date = models.DateField()
    note = models.CharField(max_length=300, blank=True)
    status = models.CharField(max_length=20, choices=CoverStatus.choices, default=CoverStatus.ACTIVE)
    created_by = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="+")
    created_at = models.DateTimeField(default=timezone.now)
    cancelled_at = models.DateTimeField(null=True, blank=True)

    objects = CoverQuerySet.as_manager()

    class Meta:
        ordering = ["-start_date", "-id"]
        constraints = [
            models.CheckConstraint(
                condition=Q(end_date__gte=models.F("start_date")), name="cover_end_after_start"
            ),
            models.CheckConstraint(condition=~Q(absent=models.F("colleague")), name="cover_not_self"),
            models.CheckConstraint(condition=Q(status__in=CoverStatus.values), name="cover_status_valid"),
        ]
        indexes = [
            models.Index(fields=["absent", "status", "start_date", "end_date"], name="cover_absent_idx"),
            models.Index(
                fields=["colleague", "status", "start_date", "end_date"], name="cover_colleague_idx"
            ),
        ]

    def __str__(self) -> str:
        return f"{self.colleague} covers {self.absent} {self.start_date}..{self.end_date}"


# ---------------------------------------------------------------------------
# Handoffs (FHIR Task)
# ---------------------------------------------------------------------------
class HandoffStatus(models.TextChoices):
    REQUESTED = "requested", "Requested"
    ACCEPTED = "accepted", "Accepted"
    REJECTED = "rejected", "Rejected"
    IN_PROGRESS = "in-progress", "In progress"
    COMPLETED = "completed", "Completed"
    CANCELLED = "cancelled", "Cancelled"


HANDOFF_TRANSITIONS = {
    "requested": {"accepted", "rejected", "cancelled"},
    "accepted": {"in-progress", "completed", "cancelled"},
    "in-progress": {"completed", "cancelled"},
    "rejected": set(),
    "completed": set(),
    "cancelled": set(),
}
HANDOFF_OPEN_STATUSES = ("requested", "accepted", "in-progress")


class Priority(models.TextChoices):
    """FHIR request-priority codes (Task, ServiceRequest)."""

    ROUTINE = "routine", "Routine"
    URGENT = "urgent", "Urgent"
    ASAP = "asap", "ASAP"
    STAT = "stat", "STAT"


class HandoffKind(models.TextChoices):
    PATIENT = "patient", "Patient"
    ACTIVITY = "activity", "Activity"
    TRANSITION = "transition", "Transition of care"


class Handoff(Versioned):
    """Work handed from one team member to another member or a discipline's queue (SBAR)."""

    patient = models.ForeignKey("patients.Patient", on_delete=models.CASCADE, related_name="handoffs")
    care_plan = models.ForeignKey(
        "careplans.CarePlan", on_delete=models.CASCADE, related_name="handoffs", null=True, blank=True
    )
    activity = models.ForeignKey(
        "careplans.Activity", on_delete=models.SET_NULL, related_name="handoffs", null=True, blank=True
    )
    kind = models.CharField(max_length=20, choices=HandoffKind.choices, default=HandoffKind.PATIENT)
    from_user = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="handoffs_sent"
    )
    to_user = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        on_delete=models.PROTECT,
        related_name="handoffs_received",
        null=True,
        blank=True,
    )
    to_discipline = models.ForeignKey(
        Discipline, on_delete=models.PROTECT, related_name="handoffs", null=True, blank=True
    )
    situation = models.TextField()
    background = models.TextField()
    assessment = models.TextField()
    recommendation = models.TextField()
    priority = models.CharField(max_length=10, choices=Priority.choices, default=Priority.ROUTINE)
    due_at = models.DateTimeField()
    status = models.CharField(max_length=20, choices=HandoffStatus.choices, default=HandoffStatus.REQUESTED)
    status_reason = models.TextField(blank=True)
    accepted_by = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        on_delete=models.PROTECT,
        related_name="handoffs_accepted",
        null=True,
        blank=True,
    )
    acknowledged_at = models.DateTimeField(null=True, blank=True)
    completed_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(default=timezone.now)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["due_at", "id"]
        constraints = [
            models.CheckConstraint(
                condition=Q(to_user__isnull=False) | Q(to_discipline__isnull=False),
                name="handoff_has_receiver",
                violation_error_message="A handoff goes to a team member or a discipline.",
            ),
            models.CheckConstraint(condition=Q(status__in=HandoffStatus.values), name="handoff_status_valid"),
            models.CheckConstraint(
                condition=Q(status="requested") | Q(status="cancelled") | Q(acknowledged_at__isnull=False),
                name="handoff_acknowledged_when_answered",
            ),
        ]
        indexes = [
            models.Index(fields=["status", "due_at"], name="handoff_status_due_idx"),
            models.Index(fields=["to_user", "status"], name="handoff_to_user_idx"),
            models.Index(fields=["patient", "status"], name="handoff_patient_idx"),
        ]

    def __str__(self) -> str:
        return f"Handoff #{self.pk} for {self.patient_id}: {self.situation[:40]}"

    @property
    def is_open(self) -> bool:
        return self.status in HANDOFF_OPEN_STATUSES

    def is_overdue(self, now: dt.datetime | None = None) -> bool:
        now = now or timezone.now()
        return self.is_open and self.due_at < now


# ---------------------------------------------------------------------------
# Access policy for sensitive sections
# ---------------------------------------------------------------------------
class SensitivityCategory(models.Model):
    """A sensitive category (behavioural health, substance use, HIV, ...) and the
    disciplines an administrator allows to see items flagged with it."""

    code = models.SlugField(max_length=40, unique=True)
    name = models.CharField(max_length=100)
    allowed_disciplines = models.ManyToManyField(Discipline, blank=True, related_name="+")

    class Meta:
        ordering = ["name"]
        verbose_name_plural = "sensitivity categories"

    def __str__(self) -> str:
        return self.name


class EmergencyAccess(models.Model):
    """Emergency read-only access to one patient's record by a clinician not on the team."""

    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="+")
    patient = models.ForeignKey("patients.Patient", on_delete=models.CASCADE, related_name="+")
    reason = models.TextField()
    started_at = models.DateTimeField(default=timezone.now)
    expires_at = models.DateTimeField()

    class Meta:
        ordering = ["-started_at"]
        constraints = [
            models.CheckConstraint(
                condition=Q(expires_at__gt=models.F("started_at")),
                name="emergency_access_expires_after_start",
            ),
            models.CheckConstraint(condition=~Q(reason=""), name="emergency_access_reason_required"),
        ]
        indexes = [models.Index(fields=["user", "patient", "expires_at"], name="emergency_access_idx")]
        verbose_name_plural = "emergency accesses"

    def __str__(self) -> str:
        return f"{self.user} on {self.patient_id} until {self.expires_at:%Y-%m-%d %H:%M}"


# ---------------------------------------------------------------------------
# Guardian direct foreign-key object permissions on Patient
# ---------------------------------------------------------------------------
class PatientUserObjectPermission(UserObjectPermissionBase):
    content_object = models.ForeignKey("patients.Patient", on_delete=models.CASCADE)

    class Meta(UserObjectPermissionBase.Meta):
        indexes = [models.Index(fields=["user", "permission", "content_object"], name="patient_uop_idx")]


class PatientGroupObjectPermission(GroupObjectPermissionBase):
    content_object = models.ForeignKey("patients.Patient", on_delete=models.CASCADE)


# ---------------------------------------------------------------------------
# Audit (append-only; a database trigger refuses UPDATE and DELETE)
# ---------------------------------------------------------------------------
class AuditAction(models.TextChoices):
    VIEW = "view", "View"
    CREATE = "create", "Create"
    UPDATE = "update", "Update"
    DELETE = "delete", "Delete"
    EXPORT = "export", "Export"
    # the stored value predates the name: audit rows are append-only, so it stays
    EMERGENCY_ACCESS = "break-glass", "Emergency access"
    LOGIN = "login", "Login"
    RESTORE = "restore", "Restore from a backup"
    # a change refused because it was made on an older version, without one, or against
    # the record's current state (HTTP 409, 412, 428): nothing was written
    EDIT_REFUSED = "edit-refused", "Edit refused"


class AuditOutcome(models.TextChoices):
    ALLOWED = "allowed", "Allowed"
    DENIED = "denied", "Denied"


class AuditEvent(models.Model):
    """Who did what to which patient's data, when, from where, and whether it was allowed."""

    at = models.DateTimeField(default=timezone.now, db_index=True)
    user = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        on_delete=models.DO_NOTHING,
        null=True,
        blank=True,
        related_name="+",
        db_constraint=False,
    )
    username = models.CharField(max_length=150, blank=True)
    action = models.CharField(max_length=20, choices=AuditAction.choices)
    outcome = models.CharField(max_length=10, choices=AuditOutcome.choices, default=AuditOutcome.ALLOWED)
    object_type = models.CharField(max_length=60, blank=True)
    object_id = models.CharField(max_length=64, blank=True)
    patient = models.ForeignKey(
        "patients.Patient",
        on_delete=models.DO_NOTHING,
        null=True,
        blank=True,
        related_name="+",
        db_constraint=False,
    )
    source_ip = models.GenericIPAddressField(null=True, blank=True)
    path = models.CharField(max_length=300, blank=True)
    detail = models.CharField(max_length=500, blank=True)
    # A list read is one event; the patients its page showed are listed here, so the
    # read appears in each of their access logs (GIN-indexed containment).
    patient_ids = ArrayField(models.BigIntegerField(), default=list, blank=True)
    # the request (or the task a request enqueued) that wrote it: its X-Request-ID and log lines
    request_id = models.CharField(max_length=64, blank=True, default="", db_default="")

    class Meta:
        ordering = ["-at", "-id"]
        indexes = [
            models.Index(fields=["patient", "-at"], name="audit_patient_idx"),
            models.Index(fields=["user", "-at"], name="audit_user_idx"),
            GinIndex(fields=["patient_ids"], name="audit_patient_ids_gin"),
        ]

    def __str__(self) -> str:
        return (
            f"{self.at:%Y-%m-%d %H:%M:%S} {self.username} {self.action} {self.object_type} {self.object_id}"
        )


# ---------------------------------------------------------------------------
# Notifications (one row per (recipient, kind, object, due moment), emailed at least once)
# ---------------------------------------------------------------------------
class NotificationKind(models.TextChoices):
    HANDOFF_UNACKNOWLEDGED = "handoff-unacknowledged", "Handoff waiting for acknowledgement"
    HANDOFF_DUE_SOON = "handoff-due-soon", "Handoff due soon"
    # the receiver's catch-up when no "due soon" reached them before the due time passed
    HANDOFF_OVERDUE_RECEIVER = "handoff-overdue-receiver", "Handoff overdue"
    HANDOFF_OVERDUE_ESCALATION = "handoff-overdue", "Overdue handoff escalated"
    HANDOFF_RECEIVED = "handoff-received", "New handoff"
    ACTIVITY_OVERDUE = "activity-overdue", "Activity past its due date"
    PLAN_REVIEW_DUE = "plan-review-due", "Care plan review due"
    REFERRAL_NO_RESPONSE = "referral-no-response", "Referral without response"
    # partner organisations (referrals/partners.py): the referrer's loop and the partner's
    REFERRAL_ANSWERED = "referral-answered", "A service answered your referral"
    REFERRAL_MESSAGE = "referral-message", "Message on a referral"
    REFERRAL_PARTNER_WAITING = "referral-partner-waiting", "Referral waiting for your answer"
    # stored value kept as written (like AuditAction.EMERGENCY_ACCESS)
    EMERGENCY_ACCESS = "break-glass", "Emergency access to your patient"
    # the sender's side of a handoff: every answer, and its due time passing
    HANDOFF_ACCEPTED = "handoff-accepted", "Your handoff was accepted"
    HANDOFF_REJECTED = "handoff-rejected", "Your handoff was rejected"
    HANDOFF_COMPLETED = "handoff-completed", "Your handoff was completed"
    HANDOFF_SENT_OVERDUE = "handoff-sent-overdue", "Your handoff is overdue"
    # comments and proposals on plan items
    NOTE_COMMENT = "note-comment", "Comment on your item"
    NOTE_PROPOSAL = "note-proposal", "Change proposed to your item"
    NOTE_MENTION = "note-mention", "You were mentioned"
    # conversations on a patient
    CONVERSATION_MENTION = "conversation-mention", "You were mentioned in a conversation"
    PROPOSAL_DECIDED = "proposal-decided", "Your proposal was answered"
    # care transitions: an admission of a patient with an open plan, the debrief prompt
    TRANSITION_ADMITTED = "transition-admitted", "Patient admitted to hospital"
    DEBRIEF_DUE = "debrief-due", "Debrief after a discharge"
    # visits and service authorisations (visits/reminder_rules.py)
    VISIT_REMINDER = "visit-reminder", "Visit coming up"
    AUTHORISATION_EXPIRING = "authorisation-expiring", "Authorisation about to expire"
    AUTHORISATION_UNITS_LOW = "authorisation-units-low", "Authorisation running out of units"
    AUTHORISATION_EXHAUSTED = "authorisation-exhausted", "Authorisation used up"
    AUTHORISATION_EXPIRED = "authorisation-expired", "Authorisation expired"
    # the patient portal (portal/): a message, a proposed goal, caregiver access changed,
    # and a patient's message nobody answered in time
    PORTAL_MESSAGE = "portal-message", "Message from the patient or family"
    PORTAL_MESSAGE_UNANSWERED = "portal-message-unanswered", "Patient message not answered"
    PORTAL_GOAL_PROPOSED = "portal-goal-proposed", "Goal proposed by the patient or family"
    PORTAL_CAREGIVER_ACCESS = "portal-caregiver-access", "Caregiver access changed by the patient"
    PORTAL_QUESTIONNAIRE_ANSWERED = "portal-questionnaire", "Questionnaire answered in the portal"
    PORTAL_CONSENT_CONFIRMED = "portal-consent-confirmed", "Consent confirmed by the patient"
    AUTHORISATION_UNANSWERED = "authorisation-unanswered", "Authorisation request unanswered"
    # huddles (careteam/huddles.py): the invitation, and the one reminder of a missing answer
    HUDDLE_INVITED = "huddle-invited", "Your update is asked for in a huddle"
    HUDDLE_ANSWER_DUE = "huddle-answer-due", "Your huddle update is due"


class Notification(models.Model):
    # no index of its own: the unique key and the inbox index both start with the recipient
    recipient = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="notifications", db_index=False
    )
    kind = models.CharField(max_length=40, choices=NotificationKind.choices)
    patient = models.ForeignKey(
        "patients.Patient", on_delete=models.CASCADE, null=True, blank=True, related_name="+"
    )
    object_type = models.CharField(max_length=60)
    object_id = models.BigIntegerField()
    due_moment = models.DateTimeField(help_text="The moment this reminder is for; part of its identity.")
    title = models.CharField(max_length=200)
    body = models.TextField(blank=True)
    url = models.CharField(max_length=300, blank=True)
    # the sensitivity of the item it names: its text is shown only while the recipient
    # may still see items of that category (careteam.notifications.notifications_for)
    sensitivity = models.ForeignKey(
        SensitivityCategory, on_delete=models.PROTECT, null=True, blank=True, related_name="+"
    )
    created_at = models.DateTimeField(default=timezone.now)
    email_sent_at = models.DateTimeField(null=True, blank=True)
    # set instead of email_sent_at when the email is deliberately never sent: after a
    # restore, what was due before it counts as handled (careteam.services.database_restore_record)
    email_skipped_at = models.DateTimeField(null=True, blank=True)
    read_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at", "-id"]
        constraints = [
            models.UniqueConstraint(
                fields=["recipient", "kind", "object_type", "object_id", "due_moment"],
                name="one_notification_per_reminder",
            )
        ]
        indexes = [
            models.Index(fields=["recipient", "read_at"], name="notification_inbox_idx"),
            # the sweep's "already reminded?" probe (careteam.reminders._insert_sql)
            models.Index(
                fields=["object_id", "object_type", "kind", "due_moment"], name="notification_object_idx"
            ),
            models.Index(
                fields=["created_at"], name="notification_unsent_idx", condition=Q(email_sent_at__isnull=True)
            ),
        ]

    def __str__(self) -> str:
        return f"{self.get_kind_display()} for {self.recipient}"

    @property
    def email_handled(self) -> bool:
        """Sent, or deliberately not to be sent (after a restore)."""
        return self.email_sent_at is not None or self.email_skipped_at is not None


class DatabaseRestore(models.Model):
    """The database was restored from a backup (`manage.py after_restore`): what was due
    by `handled_until` was treated as handled, so nobody is emailed twice about it."""

    restored_at = models.DateTimeField(default=timezone.now)
    handled_until = models.DateTimeField(help_text="Reminders and emails due by then count as sent.")
    backup = models.CharField(max_length=300, blank=True, help_text="The backup restored, as given.")
    emails_skipped = models.PositiveIntegerField(default=0)
    reminders_handled = models.PositiveIntegerField(default=0)

    class Meta:
        ordering = ["-restored_at", "-id"]

    def __str__(self) -> str:
        return f"Restore at {self.restored_at:%Y-%m-%d %H:%M:%S}"


# ---------------------------------------------------------------------------
# Conversations on a patient (FHIR Communication): messages, mentions, read state
# ---------------------------------------------------------------------------
CONVERSATION_SUBJECT_MAX_LENGTH = 200
MESSAGE_MAX_LENGTH = 4000
# how long after posting the author may still edit a message
MESSAGE_EDIT_WINDOW = dt.timedelta(minutes=5)
RETRACTED_TEXT = "retracted"
# what a conversation may be about (at most one of them)
CONVERSATION_ABOUT_FIELDS = ("goal", "need", "activity", "handoff", "referral")


class Conversation(models.Model):
    """A thread on one patient, about one plan item (goal, need, activity, handoff or
    referral) or the patient in general. Who may see it is decided by
    `careteam.permissions` from its own category and its item's, at read time."""

    patient = models.ForeignKey("patients.Patient", on_delete=models.CASCADE, related_name="conversations")
    # at most one of these (the item it is about); none: the patient in general
    goal = models.ForeignKey(
        "careplans.Goal", on_delete=models.RESTRICT, null=True, blank=True, related_name="conversations"
    )
    need = models.ForeignKey(
        "careplans.Need", on_delete=models.RESTRICT, null=True, blank=True, related_name="conversations"
    )
    activity = models.ForeignKey(
        "careplans.Activity", on_delete=models.RESTRICT, null=True, blank=True, related_name="conversations"
    )
    handoff = models.ForeignKey(
        Handoff, on_delete=models.RESTRICT, null=True, blank=True, related_name="conversations"
    )
    referral = models.ForeignKey(
        "referrals.Referral", on_delete=models.RESTRICT, null=True, blank=True, related_name="conversations"
    )
    subject = models.CharField(max_length=CONVERSATION_SUBJECT_MAX_LENGTH)
    # the category the conversation is filed in: its item's when started, or chosen
    # ("marked sensitive"); the item's own category is checked again at read time
    sensitivity = models.ForeignKey(
        SensitivityCategory, on_delete=models.PROTECT, null=True, blank=True, related_name="+"
    )
    started_by = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="+")
    created_at = models.DateTimeField(default=timezone.now)
    # the newest message: the lists' order and the unread rule read it from this row
    last_message = models.ForeignKey(
        "Message", on_delete=models.SET_NULL, null=True, blank=True, related_name="+"
    )
    last_message_at = models.DateTimeField(default=timezone.now)
    # any message posted, edited or retracted: what an open page polls for
    messages_changed_at = models.DateTimeField(default=timezone.now)
    # the patient's own thread with the team ("ask the team" in the portal): one per
    # patient; the portal shows only its messages from the patient or family and the
    # replies marked "to patient"
    with_patient = models.BooleanField(default=False)

    class Meta:
        ordering = ["-last_message_at", "-id"]
        constraints = [
            models.CheckConstraint(condition=~Q(subject=""), name="conversation_subject_required"),
            models.CheckConstraint(
                condition=LessThanOrEqual(
                    Func(
                        *CONVERSATION_ABOUT_FIELDS,
                        function="num_nonnulls",
                        output_field=models.IntegerField(),
                    ),
                    1,
                ),
                name="conversation_about_one_item",
                violation_error_message="A conversation is about one item at most.",
            ),
            models.UniqueConstraint(
                fields=["patient"], condition=Q(with_patient=True), name="one_conversation_with_patient"
            ),
        ]
        indexes = [
            models.Index(fields=["patient", "-last_message_at"], name="conversation_patient_idx"),
            models.Index(fields=["-last_message_at", "-id"], name="conversation_recent_idx"),
        ]

    def __str__(self) -> str:
        return self.subject

    @property
    def url(self) -> str:
        """Its page (`conversations:detail`), written out: lists show one per row."""
        return f"/patients/{self.patient_id}/conversations/{self.pk}/"

    @property
    def about(self):
        """The item it is about (None: the patient in general)."""
        for name in CONVERSATION_ABOUT_FIELDS:
            if getattr(self, f"{name}_id") is not None:
                return getattr(self, name)
        return None

    @property
    def about_kind(self) -> str:
        for name in CONVERSATION_ABOUT_FIELDS:
            if getattr(self, f"{name}_id") is not None:
                return name
        return ""


class Message(Versioned):
    """Plain text by a team member; edited by its author for a few minutes (the earlier
    text kept as a revision), retracted but never deleted."""

    conversation = models.ForeignKey(Conversation, on_delete=models.CASCADE, related_name="messages")
    author = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="+")
    text = models.TextField(max_length=MESSAGE_MAX_LENGTH)
    created_at = models.DateTimeField(default=timezone.now)
    edited_at = models.DateTimeField(null=True, blank=True)
    retracted_at = models.DateTimeField(null=True, blank=True)
    # work made from this message ("make this an activity", "hand this off")
    activity = models.ForeignKey(
        "careplans.Activity", on_delete=models.SET_NULL, null=True, blank=True, related_name="from_messages"
    )
    handoff = models.ForeignKey(
        Handoff, on_delete=models.SET_NULL, null=True, blank=True, related_name="from_messages"
    )
    # a team member's reply the patient and family see in the portal
    to_patient = models.BooleanField(default=False)

    class Meta:
        ordering = ["created_at", "id"]
        constraints = [
            models.CheckConstraint(condition=~Q(text=""), name="message_text_required"),
        ]
        indexes = [models.Index(fields=["conversation", "id"], name="message_conversation_idx")]

    def __str__(self) -> str:
        return self.text[:60]

    @property
    def is_retracted(self) -> bool:
        return self.retracted_at is not None

    def editable_until(self) -> dt.datetime:
        return self.created_at + MESSAGE_EDIT_WINDOW

    def can_be_edited_by(self, user, now: dt.datetime | None = None) -> bool:
        now = now or timezone.now()
        return self.author_id == user.pk and not self.is_retracted and now <= self.editable_until()


class MessageRevisionKind(models.TextChoices):
    EDIT = "edit", "Edited"
    RETRACT = "retract", "Retracted"


class MessageRevision(models.Model):
    """A message's text as it was before an edit or a retraction (kept for the audit)."""

    message = models.ForeignKey(Message, on_delete=models.CASCADE, related_name="revisions")
    kind = models.CharField(max_length=10, choices=MessageRevisionKind.choices)
    text = models.TextField()
    replaced_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["replaced_at", "id"]

    def __str__(self) -> str:
        return f"{self.get_kind_display()} {self.message_id} at {self.replaced_at:%Y-%m-%d %H:%M}"


class MessageMention(models.Model):
    """A team member, or a discipline's queue on the patient's team, @mentioned in a message."""

    message = models.ForeignKey(Message, on_delete=models.CASCADE, related_name="mentions")
    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.PROTECT, null=True, blank=True, related_name="+"
    )
    discipline = models.ForeignKey(
        Discipline, on_delete=models.PROTECT, null=True, blank=True, related_name="+"
    )

    class Meta:
        constraints = [
            models.CheckConstraint(
                condition=Q(user__isnull=False, discipline__isnull=True)
                | Q(user__isnull=True, discipline__isnull=False),
                name="mention_names_one",
            ),
        ]
        indexes = [
            models.Index(fields=["user", "message"], name="mention_user_idx"),
            models.Index(fields=["discipline", "message"], name="mention_discipline_idx"),
        ]

    def __str__(self) -> str:
        return f"@{self.user or self.discipline} in {self.message_id}"


class ConversationRead(models.Model):
    """How far one person has read one conversation: unread while its last message is newer."""

    conversation = models.ForeignKey(Conversation, on_delete=models.CASCADE, related_name="reads")
    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="+")
    last_read_message = models.ForeignKey(Message, on_delete=models.CASCADE, related_name="+")
    read_at = models.DateTimeField(default=timezone.now)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["user", "conversation"], name="one_read_state_per_person"),
        ]

    def __str__(self) -> str:
        return f"{self.user_id} read {self.conversation_id} to {self.last_read_message_id}"


# ---------------------------------------------------------------------------
# End-of-day digest (careteam/digest.py): one row per recipient and local day
# ---------------------------------------------------------------------------
class Digest(models.Model):
    """One end-of-day digest: created by the reminder sweep once the recipient's local
    send time has come, unique per recipient and local day, emailed at most once (counts
    and links only), or skipped when there was nothing to say."""

    recipient = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="+", db_index=False
    )
    local_date = models.DateField(help_text="The recipient's own calendar day this digest is for.")
    due_moment = models.DateTimeField(help_text="The recipient's send time on that day, as an instant.")
    created_at = models.DateTimeField(default=timezone.now)
    # what the email said (numbers only), recorded when it was sent or skipped
    counts = models.JSONField(default=dict, blank=True)
    email_sent_at = models.DateTimeField(null=True, blank=True)
    # nothing to say, the digest turned off or the account closed by the time it was sent,
    # or due before a restore (careteam.services.database_restore_record)
    email_skipped_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-local_date", "-id"]
        constraints = [
            models.UniqueConstraint(
                fields=["recipient", "local_date"], name="one_digest_per_recipient_and_day"
            )
        ]
        indexes = [
            models.Index(
                fields=["created_at"],
                name="digest_unsent_idx",
                condition=Q(email_sent_at__isnull=True, email_skipped_at__isnull=True),
            )
        ]

    def __str__(self) -> str:
        return f"Digest for {self.recipient_id} on {self.local_date}"

    @property
    def email_handled(self) -> bool:
        return self.email_sent_at is not None or self.email_skipped_at is not None


# ---------------------------------------------------------------------------
# Huddles (careteam/huddles.py): asynchronous check-ins on one patient
# ---------------------------------------------------------------------------
HUDDLE_ANSWER_MAX_LENGTH = 800
HUDDLE_SUMMARY_MAX_LENGTH = 3000


class HuddleFormat(models.TextChoices):
    SBAR = "sbar", "SBAR"
    IPASS = "ipass", "I-PASS"


class HuddleStatus(models.TextChoices):
    OPEN = "open", "Open"
    CLOSED = "closed", "Closed"


# the four parts of an answer, as each format names them
HUDDLE_ANSWER_FIELDS = ("news", "concerns", "will_do", "needs_from")
HUDDLE_LABELS = {
    HuddleFormat.SBAR: {
        "news": "Situation: what's new",
        "concerns": "Background and assessment: concerns",
        "will_do": "Recommendation: what I will do",
        "needs_from": "What I need, from whom",
    },
    HuddleFormat.IPASS: {
        "news": "Patient summary: what's new",
        "concerns": "Illness severity and situation awareness: concerns",
        "will_do": "Action list: what I will do",
        "needs_from": "Synthesis: what I need, from whom",
    },
}


class Huddle(Versioned):
    """A check-in on one patient the case manager starts: what changed since the last
    huddle (read from history at view time, for each viewer), a short structured update
    from each invited member by the deadline, and the case manager's closing summary.
    Only current team members see it (careteam.permissions.access_huddle)."""

    patient = models.ForeignKey("patients.Patient", on_delete=models.CASCADE, related_name="huddles")
    started_by = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="+")
    format = models.CharField(max_length=10, choices=HuddleFormat.choices, default=HuddleFormat.SBAR)
    # the changes it shows: after `since` (the previous huddle's start) up to its own start
    since = models.DateTimeField()
    started_at = models.DateTimeField(default=timezone.now)
    deadline = models.DateTimeField(help_text="Invited members answer by then.")
    status = models.CharField(max_length=10, choices=HuddleStatus.choices, default=HuddleStatus.OPEN)
    # where the answers (about the patient in general) and the summary are posted
    conversation = models.ForeignKey(Conversation, on_delete=models.PROTECT, related_name="+")
    summary = models.TextField(blank=True, max_length=HUDDLE_SUMMARY_MAX_LENGTH)
    closed_at = models.DateTimeField(null=True, blank=True)
    closed_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.PROTECT, null=True, blank=True, related_name="+"
    )

    class Meta:
        ordering = ["-started_at", "-id"]
        constraints = [
            models.CheckConstraint(condition=Q(status__in=HuddleStatus.values), name="huddle_status_valid"),
            models.CheckConstraint(condition=Q(format__in=HuddleFormat.values), name="huddle_format_valid"),
            models.CheckConstraint(
                condition=Q(deadline__gt=models.F("started_at")), name="huddle_deadline_ahead"
            ),
            models.CheckConstraint(
                condition=Q(status="open", closed_at__isnull=True)
                | (Q(status="closed", closed_at__isnull=False) & ~Q(summary="")),
                name="huddle_closed_with_summary",
            ),
            # one open huddle per patient at a time
            models.UniqueConstraint(
                fields=["patient"], condition=Q(status="open"), name="one_open_huddle_per_patient"
            ),
        ]
        indexes = [models.Index(fields=["patient", "-started_at"], name="huddle_patient_idx")]

    def __str__(self) -> str:
        return f"Huddle of {self.started_at:%d %b %Y} on {self.patient_id}"

    @property
    def is_open(self) -> bool:
        return self.status == HuddleStatus.OPEN

    def is_past_deadline(self, now: dt.datetime | None = None) -> bool:
        return (now or timezone.now()) > self.deadline

    def labels(self) -> dict[str, str]:
        return HUDDLE_LABELS[HuddleFormat(self.format)]


class HuddleInvitation(models.Model):
    """One invited member of a huddle and their answer (once given): kept here in its
    parts, and posted as a message in the huddle's conversation, or, when it is about a
    plan item, in the huddle's conversation about that item (as visible as the item)."""

    huddle = models.ForeignKey(Huddle, on_delete=models.CASCADE, related_name="invitations")
    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="+")
    invited_at = models.DateTimeField(default=timezone.now)
    answered_at = models.DateTimeField(null=True, blank=True)
    news = models.TextField(blank=True, max_length=HUDDLE_ANSWER_MAX_LENGTH)
    concerns = models.TextField(blank=True, max_length=HUDDLE_ANSWER_MAX_LENGTH)
    will_do = models.TextField(blank=True, max_length=HUDDLE_ANSWER_MAX_LENGTH)
    needs_from = models.TextField(blank=True, max_length=HUDDLE_ANSWER_MAX_LENGTH)
    # where the answer was posted: its visibility is that conversation's
    conversation = models.ForeignKey(
        Conversation, on_delete=models.PROTECT, null=True, blank=True, related_name="+"
    )
    message = models.ForeignKey(Message, on_delete=models.PROTECT, null=True, blank=True, related_name="+")

    class Meta:
        ordering = ["huddle_id", "id"]
        constraints = [
            models.UniqueConstraint(fields=["huddle", "user"], name="one_invitation_per_member"),
            models.CheckConstraint(
                condition=Q(answered_at__isnull=True)
                | (Q(conversation__isnull=False) & Q(message__isnull=False) & ~Q(news="")),
                name="huddle_answer_posted",
            ),
        ]
        indexes = [
            # the reminder sweep's unanswered invitations of open huddles
            models.Index(
                fields=["huddle"], name="huddle_unanswered_idx", condition=Q(answered_at__isnull=True)
            ),
            models.Index(fields=["user", "huddle"], name="huddle_invitee_idx"),
        ]

    def __str__(self) -> str:
        return f"{self.user_id} in huddle {self.huddle_id}"

    @property
    def answered(self) -> bool:
        return self.answered_at is not None
