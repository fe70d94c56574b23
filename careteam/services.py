"""Writes of the care-team app: memberships (and the object permissions they grant),
emergency access, handoffs, and what a restore from a backup records. Every function
validates, then writes atomically."""

from __future__ import annotations

import datetime as dt
from collections import Counter
from dataclasses import dataclass, field
from datetime import timedelta

from django.conf import settings
from django.contrib.sessions.models import Session
from django.core.exceptions import PermissionDenied, ValidationError
from django.db import IntegrityError, connection, transaction
from django.db.models import Exists, OuterRef
from django.utils import timezone
from guardian.shortcuts import assign_perm, remove_perm
from knox.models import AuthToken

from .audit import audit
from .concurrency import lock_for_update, save_versioned
from .models import (
    MEMBERSHIP_TRANSITIONS,
    AuditAction,
    AuditEvent,
    DatabaseRestore,
    Discipline,
    EmergencyAccess,
    MembershipStatus,
    Notification,
    PatientUserObjectPermission,
    TeamMembership,
    TeamRole,
    User,
)
from .permissions import ROLE_PERMISSIONS, VIEW_PATIENT
from .reminders import reminders_sweep
from .statemachine import check_transition


# ---------------------------------------------------------------------------
# Memberships and object permissions
# ---------------------------------------------------------------------------
def patient_permissions_sync(*, user: User, patient) -> set[str]:
    """Make the user's guardian permissions on the patient match their current
    memberships (grant what a current role gives, revoke the rest). Idempotent."""
    wanted: set[str] = set()
    for m in TeamMembership.objects.current().filter(user=user, patient=patient):
        wanted |= ROLE_PERMISSIONS[m.role]
    every = set().union(*ROLE_PERMISSIONS.values())
    have = set(
        PatientUserObjectPermission.objects.filter(user=user, content_object=patient).values_list(
            "permission__codename", flat=True
        )
    )
    for codename in wanted - have:
        assign_perm(f"patients.{codename}", user, patient)
    for codename in (have & every) - wanted:
        remove_perm(f"patients.{codename}", user, patient)
    return wanted


def _membership_clean(membership: TeamMembership) -> None:
    """The rules of the row itself, whoever writes it."""
    if membership.end_date and membership.end_date < membership.start_date:
        raise ValidationError({"end_date": "The end date cannot be before the start date."})
    if not membership.user.is_active:
        raise ValidationError({"user": "This account is deactivated."})
    if membership.role == TeamRole.CASE_MANAGER and membership.status == MembershipStatus.ACTIVE:
        clash = TeamMembership.objects.filter(
            patient=membership.patient, role=TeamRole.CASE_MANAGER, status=MembershipStatus.ACTIVE
        ).exclude(pk=membership.pk)
        if clash.exists():
            raise ValidationError(
                {"role": "This patient already has an active case manager; end that role first."}
            )
    if membership.status == MembershipStatus.ACTIVE:
        practised = membership.user.disciplines.all()
        if not practised.exists():
            raise ValidationError(
                {"user": "Only clinicians can join a care team: this account has no discipline."}
            )
        if not practised.filter(pk=membership.discipline_id).exists():
            raise ValidationError(
                {"discipline": f"{membership.user.display_name} does not practise {membership.discipline}."}
            )


def _actor_roles(*, by: User, patient) -> set[str]:
    return set(
        TeamMembership.objects.current().filter(patient=patient, user=by).values_list("role", flat=True)
    )


def _membership_authorise(*, membership: TeamMembership, by: User | None, appoint: bool) -> None:
    """Who may make this change. `by` None is the system (the daily sweep, seeding);
    people are checked here, so the form, the API and every later caller obey the
    same rules: nobody changes their own role, only a case manager appoints or ends a
    case manager (the plan lead may appoint one only while the patient has none)."""
    if by is None:
        return
    if membership.user_id == by.pk:
        raise PermissionDenied("You cannot change your own role on a care team; ask the case manager.")
    if membership.role != TeamRole.CASE_MANAGER:
        return
    roles = _actor_roles(by=by, patient=membership.patient)
    if TeamRole.CASE_MANAGER in roles:
        return
    has_case_manager = (
        TeamMembership.objects.current()
        .filter(patient=membership.patient, role=TeamRole.CASE_MANAGER)
        .exclude(pk=membership.pk)
        .exists()
    )
    if appoint and TeamRole.LEAD in roles and not has_case_manager:
        return
    raise PermissionDenied("Only the patient's case manager can appoint or end a case manager.")


@transaction.atomic
def membership_add(
    *,
    patient,
    user: User,
    discipline: Discipline,
    role: str = TeamRole.MEMBER,
    start_date: dt.date | None = None,
    end_date: dt.date | None = None,
    status: str = MembershipStatus.ACTIVE,
    by: User | None = None,
) -> TeamMembership:
    """Put a person on a patient's care team and grant the permissions the role gives."""
    membership = TeamMembership(
        patient=patient,
        user=user,
        discipline=discipline,
        role=role,
        status=status,
        start_date=start_date or timezone.localdate(),
        end_date=end_date,
    )
    _membership_clean(membership)
    bootstrap = (
        by is not None and by.pk == user.pk and not TeamMembership.objects.filter(patient=patient).exists()
    )
    if not bootstrap:  # the enrolling clinician becomes the first member of a new team
        _membership_authorise(membership=membership, by=by, appoint=True)
    try:
        with transaction.atomic():
            membership.save()
    except IntegrityError as exc:
        raise ValidationError(
            "This person already holds an active role in this discipline on this team, "
            "or the patient already has an active case manager."
        ) from exc
    patient_permissions_sync(user=user, patient=patient)
    if by is not None:
        audit(
            user=by,
            action=AuditAction.CREATE,
            obj=membership,
            patient=patient,
            detail=f"{user.username} added as {role} ({discipline.code})",
        )
    return membership


@transaction.atomic
def membership_end(
    *,
    membership: TeamMembership,
    end_date: dt.date | None = None,
    by: User | None = None,
    expected_version: int | None = None,
    reason: str = "",
    successor: User | None = None,
) -> TeamMembership:
    """End a role today (or at a date): the permissions lapse when it ends.

    Anyone may leave a team (end their own role: it only takes rights away); ending
    anyone else's follows `_membership_authorise`. The patient is never left without a
    case manager by a person: ending the last case manager's role names a `successor`
    who practises case management, and the handover happens today."""
    membership = lock_for_update(membership, expected_version)
    membership_end_check(membership=membership, by=by)
    today = timezone.localdate()
    end = end_date or today
    if end < membership.start_date:
        raise ValidationError({"end_date": "The end date cannot be before the start date."})
    last_case_manager = (
        membership.role == TeamRole.CASE_MANAGER
        and membership.status == MembershipStatus.ACTIVE
        and not TeamMembership.objects.current()
        .filter(patient_id=membership.patient_id, role=TeamRole.CASE_MANAGER)
        .exclude(pk=membership.pk)
        .exists()
    )
    handover = _handover_discipline(membership, by, successor, last_case_manager, end, today)
    membership.end_date = end
    if end <= today:
        check_transition(MEMBERSHIP_TRANSITIONS, membership.status, MembershipStatus.INACTIVE)
        membership.status = MembershipStatus.INACTIVE
    save_versioned(
        membership, expected_version=expected_version, update_fields=["end_date", "status", "updated_at"]
    )
    patient_permissions_sync(user=membership.user, patient=membership.patient)
    if by is not None:
        reason = " ".join((reason or "").split())[:300]
        audit(
            user=by,
            action=AuditAction.UPDATE,
            obj=membership,
            patient=membership.patient,
            detail=f"role ended {end.isoformat()}" + (f": {reason}" if reason else ""),
        )
    if handover is not None and successor is not None:
        new = (
            TeamMembership.objects.current()
            .select_for_update()
            .filter(patient_id=membership.patient_id, user=successor, discipline=handover)
            .first()
        )
        if new is not None:  # already on the team in that discipline: the role changes
            new.role = TeamRole.CASE_MANAGER
            save_versioned(new, expected_version=None, update_fields=["role", "updated_at"])
            patient_permissions_sync(user=successor, patient=membership.patient)
        else:
            new = membership_add(
                patient=membership.patient, user=successor, discipline=handover, role=TeamRole.CASE_MANAGER
            )
        audit(
            user=by,
            action=AuditAction.CREATE,
            obj=new,
            patient=membership.patient,
            detail=f"case manager handed over from {membership.user.get_username()}",
        )
    return membership


def membership_end_check(*, membership: TeamMembership, by: User | None) -> None:
    """PermissionDenied unless `by` may end this role: their own (leaving), or another's
    under the appointment rules. Pages call it before reading the confirmation form."""
    if by is not None and membership.user_id == by.pk:
        return
    _membership_authorise(membership=membership, by=by, appoint=False)


def _handover_discipline(membership, by, successor, last_case_manager, end, today) -> Discipline | None:
    """The discipline the successor takes the case manager role in, or None without a
    handover; ValidationError when a person ends the last case manager's role without
    a fitting successor."""
    if by is None or not last_case_manager:
        if successor is not None:
            raise ValidationError({"successor": "Only the last case manager's role is handed over."})
        return None
    if successor is None:
        raise ValidationError(
            {"successor": "Name the case manager who takes over: the patient cannot be left without one."}
        )
    if end != today:
        raise ValidationError({"end_date": "A handover to a new case manager happens today."})
    discipline = membership.discipline
    if (
        successor.pk == membership.user_id
        or not successor.is_active
        or not successor.disciplines.filter(pk=discipline.pk).exists()
    ):
        raise ValidationError({"successor": f"Choose an active clinician who practises {discipline}."})
    return discipline


@transaction.atomic
def membership_set_status(
    *, membership: TeamMembership, status: str, by: User | None = None, expected_version: int | None = None
) -> TeamMembership:
    membership = lock_for_update(membership, expected_version)
    _membership_authorise(membership=membership, by=by, appoint=status == MembershipStatus.ACTIVE)
    check_transition(MEMBERSHIP_TRANSITIONS, membership.status, status)
    membership.status = status
    _membership_clean(membership)
    try:
        with transaction.atomic():
            save_versioned(
                membership, expected_version=expected_version, update_fields=["status", "updated_at"]
            )
    except IntegrityError as exc:
        raise ValidationError({"status": "This patient already has an active case manager."}) from exc
    patient_permissions_sync(user=membership.user, patient=membership.patient)
    if by is not None:
        audit(
            user=by,
            action=AuditAction.UPDATE,
            obj=membership,
            patient=membership.patient,
            detail=f"status {status}",
        )
    return membership


def memberships_sync(*, today: dt.date | None = None) -> int:
    """Daily sweep: grant permissions for memberships whose start date arrived, revoke
    them for those whose end date passed (marking them inactive). Returns rows touched."""
    today = today or timezone.localdate()
    touched = 0
    expired = TeamMembership.objects.filter(status=MembershipStatus.ACTIVE, end_date__lt=today)
    for membership in expired.select_related("user", "patient").iterator(chunk_size=500):
        with transaction.atomic():
            TeamMembership.objects.filter(pk=membership.pk, status=MembershipStatus.ACTIVE).update(
                status=MembershipStatus.INACTIVE, updated_at=timezone.now()
            )
            patient_permissions_sync(user=membership.user, patient=membership.patient)
        touched += 1
    # current memberships without a view grant (start date just arrived, or a repair)
    granted = PatientUserObjectPermission.objects.filter(
        user=OuterRef("user"), content_object=OuterRef("patient"), permission__codename=VIEW_PATIENT
    )
    missing = TeamMembership.objects.current(today).filter(~Exists(granted))
    for membership in missing.select_related("user", "patient").iterator(chunk_size=500):
        with transaction.atomic():
            patient_permissions_sync(user=membership.user, patient=membership.patient)
        touched += 1
    # grants left behind with no current membership (e.g. status changed outside services)
    current = TeamMembership.objects.current(today).filter(
        user=OuterRef("user"), patient=OuterRef("content_object")
    )
    orphans = PatientUserObjectPermission.objects.filter(permission__codename=VIEW_PATIENT).filter(
        ~Exists(current)
    )
    for perm in orphans.select_related("user", "content_object").iterator(chunk_size=500):
        with transaction.atomic():
            patient_permissions_sync(user=perm.user, patient=perm.content_object)
        touched += 1
    return touched


# ---------------------------------------------------------------------------
# Accounts: what a person may do
# ---------------------------------------------------------------------------
ACCOUNT_FLAGS = ("is_active", "is_staff", "is_superuser")


def account_powers(account: User) -> dict:
    """What an account may do, as stored: its flags, disciplines, groups and permissions."""
    return {
        **{flag: getattr(account, flag) for flag in ACCOUNT_FLAGS},
        "disciplines": set(account.disciplines.values_list("code", flat=True)),
        "groups": set(account.groups.values_list("name", flat=True)),
        "permissions": {
            f"{app}.{codename}"
            for app, codename in account.user_permissions.values_list("content_type__app_label", "codename")
        },
    }


def account_changes_audit(*, by: User, account: User, before: dict, request=None) -> str:
    """Audit the difference between `before` (account_powers earlier; empty for a new
    account) and the account now. Returns the recorded detail ("" when nothing changed)."""
    after = account_powers(account)
    parts = []
    for key, now in after.items():
        was = before.get(key)
        if isinstance(now, set):
            was = was or set()
            added, removed = sorted(now - was), sorted(was - now)
            if added or removed:
                parts.append(f"{key} " + " ".join([*(f"+{a}" for a in added), *(f"-{r}" for r in removed)]))
        elif was is not None and was != now:
            parts.append(f"{key} {was}→{now}")
        elif was is None and now:
            parts.append(f"{key} {now}")
    if not parts:
        return ""
    detail = ("account created: " if not before else "account: ") + "; ".join(parts)
    audit(
        user=by,
        action=AuditAction.CREATE if not before else AuditAction.UPDATE,
        obj=account,
        request=request,
        detail=detail,
    )
    return detail


# ---------------------------------------------------------------------------
# Emergency access
# ---------------------------------------------------------------------------
@transaction.atomic
def emergency_access_open(*, by: User, patient, reason: str, request=None) -> EmergencyAccess:
    """Emergency read-only access for a clinician not on the team; audited and flagged
    to the patient's case manager."""
    reason = (reason or "").strip()
    if len(reason) < 10:
        raise ValidationError(
            {"reason": "State the clinical reason for emergency access (at least 10 characters)."}
        )
    if len(set(reason.replace(" ", "").casefold())) < 2:
        raise ValidationError({"reason": "State the clinical reason in words, not one repeated character."})
    if not by.disciplines.exists():
        raise ValidationError("Only clinicians can use emergency access.")
    # one request at a time per user, so two renewals cannot both pass the reason check
    User.objects.select_for_update().filter(pk=by.pk).exists()
    now = timezone.now()
    active = list(
        EmergencyAccess.objects.filter(user=by, patient=patient, expires_at__gt=now).order_by("-expires_at")
    )
    if any(_same_reason(g.reason, reason) for g in active):
        raise ValidationError(
            {
                "reason": f"Your emergency access to this record is open until "
                f"{timezone.localtime(active[0].expires_at):%H:%M}. To extend it, state a new reason: "
                "the reason already given does not renew it."
            }
        )
    grant = EmergencyAccess.objects.create(
        user=by,
        patient=patient,
        reason=reason,
        started_at=now,
        expires_at=now + timedelta(hours=settings.EMERGENCY_ACCESS_HOURS),
    )
    detail = reason if not active else f"renews emergency access {active[0].pk}; reason: {reason}"
    audit(
        user=by,
        action=AuditAction.EMERGENCY_ACCESS,
        obj=grant,
        patient=patient,
        request=request,
        detail=detail,
    )
    from .notifications import notify_emergency_access

    notify_emergency_access(grant=grant)
    return grant


def _same_reason(a: str, b: str) -> bool:
    """Reasons that differ only in case, spacing or closing punctuation are the same."""

    def norm(text: str) -> str:
        return " ".join(text.casefold().split()).strip(" .!?,;:")

    return norm(a) == norm(b)


# ---------------------------------------------------------------------------
# After a restore from a backup
# ---------------------------------------------------------------------------
@dataclass
class RestoreResult:
    restore: DatabaseRestore
    created: bool
    emails_skipped: dict[str, int] = field(default_factory=dict)
    reminders_handled: dict[str, int] = field(default_factory=dict)
    sessions_ended: int = 0
    tokens_revoked: int = 0


_SKIP_UNSENT_EMAILS = """
    UPDATE careteam_notification SET email_skipped_at = %(now)s
    WHERE email_sent_at IS NULL AND email_skipped_at IS NULL AND created_at <= %(until)s
    RETURNING kind"""
_SKIP_UNSENT_DIGESTS = """
    UPDATE careteam_digest SET email_skipped_at = %(now)s
    WHERE email_sent_at IS NULL AND email_skipped_at IS NULL AND created_at <= %(until)s"""


@transaction.atomic
def database_restore_record(
    *, backup: str = "", handled_until: dt.datetime | None = None, now: dt.datetime | None = None
) -> RestoreResult:
    """The database was just restored from a backup, which may be hours old. Since it was
    taken, the lost timeline emailed its reminders and notifications; without this the
    sweep would create again every reminder that fell due since the backup, and re-send
    the emails that were still unsent in it. So everything due up to `handled_until`
    (default: now) counts as handled: unsent emails created by then are marked skipped,
    and the reminders due by then are created (they show in the inbox) with their email
    skipped, as if that moment's sweep had sent them. What falls due later is sent.
    Everyone signs in again (sessions and API tokens are deleted), so a sign-out or a
    token revoked since the backup is not undone by it.

    Run it on the restored database before the app starts. A second run with nothing
    new since the last restore recorded changes nothing and returns that restore."""
    now = now or timezone.now()
    until = handled_until or now
    if until > now:
        raise ValidationError("The moment up to which everything counts as handled cannot be in the future.")
    with connection.cursor() as cursor:
        # two concurrent runs would each record a restore; the second waits here
        cursor.execute("LOCK TABLE careteam_databaserestore IN SHARE ROW EXCLUSIVE MODE")
    last = DatabaseRestore.objects.first()
    if (
        last is not None
        and not Notification.objects.filter(created_at__gt=last.restored_at).exists()
        and not AuditEvent.objects.filter(at__gt=last.restored_at)
        .exclude(action=AuditAction.RESTORE)
        .exists()
    ):
        return RestoreResult(restore=last, created=False)
    with connection.cursor() as cursor:
        cursor.execute(_SKIP_UNSENT_EMAILS, {"now": now, "until": until})
        emails = Counter(row[0] for row in cursor.fetchall())
        cursor.execute(_SKIP_UNSENT_DIGESTS, {"now": now, "until": until})
        emails.update({"digest": cursor.rowcount} if cursor.rowcount > 0 else {})
    sweep = reminders_sweep(now=until, send_emails=False)
    sessions_ended, _ = Session.objects.all().delete()
    tokens_revoked, _ = AuthToken.objects.all().delete()
    restore = DatabaseRestore.objects.create(
        restored_at=now,
        handled_until=until,
        backup=backup[:300],
        emails_skipped=sum(emails.values()),
        reminders_handled=sweep.total,
    )
    audit(
        user=None,
        action=AuditAction.RESTORE,
        obj=restore,
        detail=(
            f"restored from {backup or 'a backup'}: everything due by {until:%Y-%m-%d %H:%M:%S %Z} "
            f"handled ({restore.emails_skipped} unsent email(s) skipped, "
            f"{restore.reminders_handled} reminder(s) recorded without email); "
            f"{sessions_ended} session(s) and {tokens_revoked} API token(s) ended"
        ),
    )
    return RestoreResult(
        restore=restore,
        created=True,
        emails_skipped=dict(emails),
        reminders_handled={kind: n for kind, n in sweep.created.items() if n},
        sessions_ended=sessions_ended,
        tokens_revoked=tokens_revoked,
    )


# ---------------------------------------------------------------------------
# Handoffs live in careteam/handoffs.py; re-exported here for existing callers.
# ---------------------------------------------------------------------------
from .handoffs import (  # noqa: E402
    SBAR_FIELDS,
    handoff_accept,
    handoff_create,
    handoff_reject,
    handoff_set_status,
)

__all__ = [
    "SBAR_FIELDS",
    "emergency_access_open",
    "database_restore_record",
    "handoff_accept",
    "handoff_create",
    "handoff_reject",
    "handoff_set_status",
    "membership_add",
    "membership_end",
    "membership_set_status",
    "memberships_sync",
    "patient_permissions_sync",
]
