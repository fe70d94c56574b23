"""Partner organisations: the staff of an HSDS organisation answer the referrals sent to
its services themselves (Gravity SDOH Task statuses through the referral machine), and
see of each referral only the minimum necessary.

One module for the partner side, as careteam/permissions.py is for the team's:
- who is a partner and of which organisation (`partner_staff_of`), which referrals they
  may see (`partner_referrals_for`, `access_partner_referral`: hidden = missing = 404);
- what a partner sees of a referral (`minimum_view`): never the plan, other needs,
  conversations, the MRN or other referrals; contact details only while the consent in
  force covers sharing them;
- what a partner may do (`partner_referral_*`), each change logged, audited, told to the
  referrer once, and written to the need's plan note through the care-plan services;
- invitations (a one-time set-password link) and claims of a listing.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from django.conf import settings
from django.contrib.auth.password_validation import validate_password
from django.contrib.auth.tokens import PasswordResetTokenGenerator
from django.core.exceptions import PermissionDenied, ValidationError
from django.core.mail import send_mail
from django.core.validators import validate_email
from django.db import transaction
from django.db.models import Exists, OuterRef, QuerySet, Subquery
from django.http import Http404
from django.utils import timezone
from django.utils.encoding import force_bytes
from django.utils.http import base36_to_int, urlsafe_base64_decode, urlsafe_base64_encode

from careplans import services as plan_services
from careteam.audit import audit
from careteam.concurrency import lock_for_update
from careteam.models import AccountKind, AuditAction, NotificationKind, User
from careteam.notifications import notify_partner_staff, notify_referral_referrer
from careteam.statemachine import check_transition

from .models import (
    COMPLETE_OUTCOMES,
    DECLINE_REASONS,
    REFERRAL_CLOSED_STATUSES,
    REFERRAL_OPEN_STATUSES,
    REFERRAL_TRANSITIONS,
    ClaimStatus,
    ListingClaim,
    Organization,
    PartnerStaff,
    Referral,
    ReferralEvent,
    ReferralMessage,
    ReferralOutcome,
    ReferralStatus,
    Service,
)
from .services import is_catalog_admin, referral_transition


# ---------------------------------------------------------------------------
# Who is a partner, and what they may see
# ---------------------------------------------------------------------------
def partner_staff_of(user) -> PartnerStaff | None:
    """The active partner-staff row of a signed-in partner account, else None."""
    if not (getattr(user, "is_authenticated", False) and user.is_active and user.kind == AccountKind.PARTNER):
        return None
    return PartnerStaff.objects.select_related("organization").filter(user_id=user.pk, active=True).first()


def _organization_ids(user) -> QuerySet:
    return PartnerStaff.objects.filter(
        user_id=user.pk, active=True, user__is_active=True, user__kind=AccountKind.PARTNER
    ).values("organization_id")


def partner_referrals_for(user) -> QuerySet[Referral]:
    """Referrals sent to the services of the user's organisation (never drafts, nor those
    entered in error); nothing for anyone else."""
    if not (getattr(user, "is_authenticated", False) and user.is_active and user.kind == AccountKind.PARTNER):
        return Referral.objects.none()
    return Referral.objects.filter(
        service__organization_id__in=_organization_ids(user), sent_at__isnull=False
    ).exclude(status__in=(ReferralStatus.DRAFT, ReferralStatus.ENTERED_IN_ERROR))


def access_partner_referral(user, referral_id) -> Referral:
    """One referral of the user's organisation, with what its minimum view needs; 404
    when it is missing or another organisation's (the same answer)."""
    try:
        return partner_referrals_for(user).select_related(*VIEW_RELATED).get(pk=int(referral_id))
    except (Referral.DoesNotExist, TypeError, ValueError):
        raise Http404("No such referral.") from None


def is_partner_of_service(user, service: Service) -> bool:
    """referrals.services.CAPACITY_EDITORS: a partner sets its own services' capacity."""
    staff = partner_staff_of(user)
    return staff is not None and staff.organization_id == service.organization_id


def partner_services(user) -> QuerySet[Service]:
    return Service.objects.filter(organization_id__in=_organization_ids(user))


# ---------------------------------------------------------------------------
# The minimum necessary view of one referral
# ---------------------------------------------------------------------------
VIEW_RELATED = ("patient", "service__organization", "referred_by", "consent", "need")


@dataclass
class MinimumView:
    """What a receiving service sees of a referral, and nothing else."""

    id: int
    status: str
    status_display: str
    version: int
    service_id: str
    service_name: str
    organization_name: str
    patient_name: str
    preferred_language: str
    interpreter_needed: bool
    contact_shared: bool
    phone: str
    email: str
    address: str
    contact_preferences: str
    reason: str
    priority: str
    need_category: str
    referrer_name: str
    referrer_email: str
    referrer_phone: str
    consent_scope: str
    consent_state: str
    sent_at: dt.datetime | None
    updated_at: dt.datetime
    outcome: str
    outcome_display: str
    outcome_note: str


def contact_allowed(referral: Referral) -> bool:
    """The consent the referral was sent under is still in force (not revoked, not
    expired) and lets the services contact the patient."""
    consent = referral.consent
    return consent is not None and consent.state == "in force" and consent.share_contact


def minimum_view(referral: Referral) -> MinimumView:
    patient = referral.patient
    consent = referral.consent
    shared = contact_allowed(referral)
    address = ", ".join(
        p for p in (patient.address_line, patient.city, patient.state, patient.postal_code) if p
    )
    need = referral.need
    return MinimumView(
        id=referral.pk,
        status=referral.status,
        status_display=referral.get_status_display(),
        version=referral.version,
        service_id=str(referral.service_id),
        service_name=referral.service.name,
        organization_name=referral.service.organization.name,
        patient_name=f"{patient.preferred_name or patient.given_name} {patient.family_name}",
        preferred_language=patient.preferred_language,
        interpreter_needed=patient.interpreter_needed,
        contact_shared=shared,
        phone=patient.phone if shared else "",
        email=patient.email if shared else "",
        address=address if shared else "",
        contact_preferences=(consent.contact_preferences if shared and consent else ""),
        reason=referral.reason,
        priority=referral.priority,
        need_category=(need.get_category_display() if need is not None and need.category else ""),
        referrer_name=referral.referred_by.display_name,
        referrer_email=referral.referred_by.email,
        referrer_phone=referral.referred_by.phone,
        consent_scope=consent.get_scope_display() if consent else "",
        consent_state=consent.state if consent else "none",
        sent_at=referral.sent_at,
        updated_at=referral.updated_at,
        outcome=referral.outcome,
        outcome_display=referral.get_outcome_display() if referral.outcome else "",
        outcome_note=referral.outcome_note,
    )


def audit_partner_read(*, by, referral: Referral, request=None, detail: str = "partner view") -> None:
    audit(
        user=by,
        action=AuditAction.VIEW,
        obj=referral,
        patient_id=referral.patient_id,
        request=request,
        detail=detail,
    )


# ---------------------------------------------------------------------------
# The inbox
# ---------------------------------------------------------------------------
INBOX_TABS = ("new", "waiting", "in-progress", "closed")
TAB_LABELS = {"new": "New", "waiting": "Waiting for us", "in-progress": "In progress", "closed": "Closed"}


def with_turn(qs: QuerySet[Referral]) -> QuerySet[Referral]:
    """`last_from_partner`: who wrote last on the referral's thread (None: nobody)."""
    last = ReferralMessage.objects.filter(referral_id=OuterRef("pk")).order_by("-created_at", "-id")
    return qs.annotate(last_from_partner=Subquery(last.values("from_partner")[:1]))


def inbox_filter(qs: QuerySet[Referral], tab: str) -> QuerySet[Referral]:
    """new: sent, not answered yet; waiting for us: open, with the referrer's message the
    last on its thread; in progress: accepted, started or on hold; closed: answered."""
    referrer_wrote_last = Exists(
        ReferralMessage.objects.filter(referral_id=OuterRef("pk"))
        .order_by("-created_at", "-id")
        .filter(from_partner=False)
        .filter(
            pk=Subquery(
                ReferralMessage.objects.filter(referral_id=OuterRef(OuterRef("pk")))
                .order_by("-created_at", "-id")
                .values("pk")[:1]
            )
        )
    )
    if tab == "closed":
        return qs.filter(status__in=REFERRAL_CLOSED_STATUSES)
    qs = qs.filter(status__in=REFERRAL_OPEN_STATUSES)
    if tab == "waiting":
        return qs.filter(referrer_wrote_last)
    qs = qs.exclude(referrer_wrote_last)
    if tab == "new":
        return qs.filter(status=ReferralStatus.REQUESTED)
    return qs.exclude(status=ReferralStatus.REQUESTED)


# ---------------------------------------------------------------------------
# What a partner does with a referral
# ---------------------------------------------------------------------------
ACTION_STATUSES = {"accept": "accepted", "start": "in-progress"}
VERBS = {
    "accepted": "accepted",
    "rejected": "declined",
    "failed": "could not complete",
    "in-progress": "started work on",
    "completed": "completed",
}


def _require_partner_of(by, referral: Referral, *, via_link: bool) -> None:
    if via_link:
        return  # the signed link was checked by referrals.links, for this referral only
    staff = partner_staff_of(by)
    if staff is None or staff.organization_id != referral.service.organization_id:
        raise Http404("No such referral.")


def _act(
    *,
    by: User,
    referral: Referral,
    status: str,
    note: str = "",
    outcome: str = "",
    expected_version: int | None = None,
    via_link: bool = False,
    request=None,
) -> Referral:
    """One partner change: checked against the machine under the row lock, logged (the
    referral's event), audited, the need and its plan note updated through the care-plan
    services, and the referrer told once (the event is the notification's object)."""
    _require_partner_of(by, referral, via_link=via_link)
    fresh = lock_for_update(referral, expected_version)
    if fresh.status in (ReferralStatus.DRAFT, ReferralStatus.ENTERED_IN_ERROR) or fresh.sent_at is None:
        raise Http404("No such referral.")
    check_transition(REFERRAL_TRANSITIONS, fresh.status, status)
    if fresh.status == status:
        raise ValidationError(
            {"status": f"The referral is already {fresh.get_status_display().lower()}."},
            code="illegal_transition",
        )
    if fresh.status in REFERRAL_CLOSED_STATUSES:
        raise ValidationError(
            {"status": "The referral is closed; the referrer may reopen it."}, code="illegal_transition"
        )
    fresh.tracked_by_referrer = False
    referral, event = referral_transition(
        referral=fresh, by=by, status=status, note=note, outcome=outcome, request=request
    )
    organization = referral.service.organization.name
    verb = VERBS.get(status, status)
    need = referral.need
    if need is not None and status not in REFERRAL_CLOSED_STATUSES:
        # a closing change writes its own note (referrals.services._update_need_from_outcome)
        plan_services.need_note_record(
            need=need,
            by=by,
            text=f"Referral to {referral.service.name}: {organization} {verb} it."
            + (f" {note}" if note else ""),
        )
    title = f"{organization} {verb} your referral to {referral.service.name} ({referral.patient})"
    if referral.outcome:
        title = f"{title}: {referral.get_outcome_display()}"
    notify_referral_referrer(
        referral=referral,
        obj=event,
        kind=NotificationKind.REFERRAL_ANSWERED,
        title=title,
        body=note,
        sensitivity_id=need.sensitivity_id if need is not None else None,
    )
    return referral


@transaction.atomic
def partner_referral_accept(
    *, by: User, referral: Referral, expected_version=None, via_link=False, request=None
):
    """The service takes the referral (Gravity: accepted)."""
    return _act(
        by=by,
        referral=referral,
        status="accepted",
        expected_version=expected_version,
        via_link=via_link,
        request=request,
    )


@transaction.atomic
def partner_referral_start(
    *, by: User, referral: Referral, note: str = "", expected_version=None, request=None
):
    """Work with the client has started (Gravity: in-progress)."""
    return _act(
        by=by,
        referral=referral,
        status="in-progress",
        note=(note or "").strip(),
        expected_version=expected_version,
        request=request,
    )


def _reason_text(reason: str, text: str, *, needs_text: set[str], choices) -> str:
    text = (text or "").strip()
    if reason not in choices:
        raise ValidationError({"reason": "Choose one of the reasons in the list."})
    if reason in needs_text and not text:
        raise ValidationError({"text": "Say what happened."})
    if len(text) > 2000:
        raise ValidationError({"text": "At most 2000 characters."})
    return text


@transaction.atomic
def partner_referral_decline(
    *,
    by: User,
    referral: Referral,
    reason: str,
    text: str = "",
    expected_version=None,
    via_link=False,
    request=None,
):
    """Decline with a reason from the list (not eligible, no capacity, could not reach
    the client, client declined, other with text). Before accepting it is a rejection;
    after, the referral failed (Gravity: rejected / failed)."""
    text = _reason_text(reason, text, needs_text={"other"}, choices=DECLINE_REASONS)
    current = Referral.objects.filter(pk=referral.pk).values_list("status", flat=True).first()
    status = "rejected" if current == ReferralStatus.REQUESTED else "failed"
    return _act(
        by=by,
        referral=referral,
        status=status,
        note=text,
        outcome=DECLINE_REASONS[reason],
        expected_version=expected_version,
        via_link=via_link,
        request=request,
    )


@transaction.atomic
def partner_referral_complete(
    *,
    by: User,
    referral: Referral,
    outcome: str,
    text: str = "",
    expected_version=None,
    via_link=False,
    request=None,
):
    """Close with what the client received: the service provided, partly, or not
    provided (with text). Service provided resolves the need."""
    text = _reason_text(
        outcome, text, needs_text={ReferralOutcome.NOT_PROVIDED}, choices={str(o) for o in COMPLETE_OUTCOMES}
    )
    return _act(
        by=by,
        referral=referral,
        status="completed",
        note=text,
        outcome=outcome,
        expected_version=expected_version,
        via_link=via_link,
        request=request,
    )


def _message_text(text: str) -> str:
    text = (text or "").strip()
    if not text:
        raise ValidationError({"text": "Write the message."})
    if len(text) > 4000:
        raise ValidationError({"text": "At most 4000 characters."})
    return text


@transaction.atomic
def partner_referral_request_info(
    *, by: User, referral: Referral, text: str, request=None
) -> ReferralMessage:
    """Ask the referrer for more information: a message on the referral's thread, logged
    as an event (the status does not change) and told to the referrer once."""
    _require_partner_of(by, referral, via_link=False)
    text = _message_text(text)
    fresh = lock_for_update(referral, None)
    if fresh.status not in REFERRAL_OPEN_STATUSES:
        raise ValidationError({"text": "The referral is closed."}, code="illegal_transition")
    message = ReferralMessage.objects.create(referral=fresh, author=by, from_partner=True, text=text)
    ReferralEvent.objects.create(
        referral=fresh,
        from_status=fresh.status,
        to_status=fresh.status,
        by=by,
        note=f"More information requested: {text}",
    )
    Referral.objects.filter(pk=fresh.pk).update(updated_at=timezone.now())
    audit(
        user=by,
        action=AuditAction.CREATE,
        obj=message,
        patient_id=fresh.patient_id,
        request=request,
        detail="partner message",
    )
    need = fresh.need
    notify_referral_referrer(
        referral=fresh,
        obj=message,
        kind=NotificationKind.REFERRAL_MESSAGE,
        title=f"{fresh.service.organization.name} asks about your referral to {fresh.service.name} ({fresh.patient})",
        body=text,
        sensitivity_id=need.sensitivity_id if need is not None else None,
    )
    return message


@transaction.atomic
def referral_message_add(*, access, by: User, referral: Referral, text: str, request=None) -> ReferralMessage:
    """The referrer's side of the thread (a team member answering the service): the
    organisation's partner staff are told."""
    access.require_edit()
    text = _message_text(text)
    message = ReferralMessage.objects.create(referral=referral, author=by, from_partner=False, text=text)
    audit(user=by, action=AuditAction.CREATE, obj=message, patient_id=referral.patient_id, request=request)
    staff = User.objects.filter(
        partner_staff__organization_id=referral.service.organization_id,
        partner_staff__active=True,
        is_active=True,
    )
    notify_partner_staff(
        recipients=staff,
        obj=message,
        kind=NotificationKind.REFERRAL_MESSAGE,
        title=f"New message on referral #{referral.pk} to {referral.service.name}",
        url=f"/partner/referrals/{referral.pk}/",
    )
    return message


# ---------------------------------------------------------------------------
# Invitations and claims
# ---------------------------------------------------------------------------
class PartnerInviteTokens(PasswordResetTokenGenerator):
    """A set-password link for an invited partner: valid PARTNER_INVITE_HOURS (72 h),
    and once only (setting the password changes what the token was made from)."""

    key_salt = "referrals.partners.PartnerInviteTokens"

    def check_token(self, user, token) -> bool:
        if not super().check_token(user, token):
            return False
        try:
            ts = base36_to_int(token.split("-")[0])
        except ValueError:
            return False
        return self._num_seconds(self._now()) - ts <= settings.PARTNER_INVITE_HOURS * 3600


invite_tokens = PartnerInviteTokens()


def invite_url(user: User) -> str:
    uid = urlsafe_base64_encode(force_bytes(user.pk))
    return f"{settings.SITE_URL}/partner/welcome/{uid}/{invite_tokens.make_token(user)}/"


@transaction.atomic
def partner_invite(
    *,
    by: User,
    organization: Organization,
    email: str,
    first_name: str = "",
    last_name: str = "",
    request=None,
) -> PartnerStaff:
    """A catalog administrator invites a member of an organisation's staff: a partner
    account without a password, and an email with a one-time set-password link."""
    if not is_catalog_admin(by):
        raise PermissionDenied("Only catalog administrators invite partner staff.")
    email = (email or "").strip().lower()
    try:
        validate_email(email)
    except ValidationError:
        raise ValidationError({"email": "Enter a valid email address."}) from None
    if (
        User.objects.filter(username__iexact=email).exists()
        or User.objects.filter(email__iexact=email).exists()
    ):
        raise ValidationError({"email": "An account with this email exists already."})
    user = User(
        username=email,
        email=email,
        first_name=first_name[:150],
        last_name=last_name[:150],
        kind=AccountKind.PARTNER,
    )
    user.set_unusable_password()
    user.save()
    staff = PartnerStaff.objects.create(user=user, organization=organization, invited_by=by)
    link = invite_url(user)
    transaction.on_commit(
        lambda: send_mail(
            subject=f"CareTeam: you are invited to answer referrals for {organization.name}",
            message=(
                f"You have been invited to CareTeam to answer the referrals sent to {organization.name}.\n"
                f"Choose your password within {settings.PARTNER_INVITE_HOURS} hours (the link works once):\n{link}\n"
            ),
            from_email=None,
            recipient_list=[email],
        )
    )
    audit(user=by, action=AuditAction.CREATE, obj=staff, request=request, detail=f"invited {email}")
    return staff


def invited_user(uidb64: str, token: str) -> User | None:
    """The invited partner whose link this is, while it is valid; else None."""
    try:
        pk = int(urlsafe_base64_decode(uidb64).decode())
        user = User.objects.get(pk=pk, kind=AccountKind.PARTNER, is_active=True)
    except (ValueError, TypeError, OverflowError, UnicodeDecodeError, User.DoesNotExist):
        return None
    return user if invite_tokens.check_token(user, token) else None


@transaction.atomic
def partner_password_set(*, uidb64: str, token: str, password: str, request=None) -> User:
    user = invited_user(uidb64, token)
    if user is None:
        raise ValidationError({"token": "This link has expired or was used already."}, code="invalid_link")
    validate_password(password, user)
    user.set_password(password)
    user.save(update_fields=["password"])
    audit(
        user=user,
        action=AuditAction.UPDATE,
        obj=user,
        request=request,
        detail="partner password set from invitation",
    )
    return user


@transaction.atomic
def listing_claim_submit(
    *, organization: Organization, name: str, email: str, role: str = "", note: str = "", request=None
) -> ListingClaim:
    """Someone at an organisation asks to answer its referrals; an administrator decides."""
    claim = ListingClaim(
        organization=organization,
        name=name.strip(),
        email=email.strip().lower(),
        role=role.strip(),
        note=note.strip(),
    )
    claim.full_clean()
    claim.save()
    audit(user=None, action=AuditAction.CREATE, obj=claim, request=request, detail="listing claimed")
    return claim


@transaction.atomic
def listing_claim_decide(*, by: User, claim: ListingClaim, approve: bool, request=None) -> ListingClaim:
    """Approve (which invites the claimant as partner staff) or reject a claim."""
    if not is_catalog_admin(by):
        raise PermissionDenied("Only catalog administrators decide claims.")
    claim = ListingClaim.objects.select_for_update().get(pk=claim.pk)
    if claim.status != ClaimStatus.PENDING:
        raise ValidationError({"status": f"This claim was already {claim.status}."}, code="already_decided")
    if approve:
        first, _, last = claim.name.partition(" ")
        partner_invite(
            by=by,
            organization=claim.organization,
            email=claim.email,
            first_name=first,
            last_name=last,
            request=request,
        )
    claim.status = ClaimStatus.APPROVED if approve else ClaimStatus.REJECTED
    claim.reviewed_by = by
    claim.reviewed_at = timezone.now()
    claim.save(update_fields=["status", "reviewed_by", "reviewed_at"])
    audit(user=by, action=AuditAction.UPDATE, obj=claim, request=request, detail=claim.status)
    return claim


def partner_referral_set_status(
    *,
    by: User,
    referral: Referral,
    status: str,
    outcome: str = "",
    note: str = "",
    expected_version=None,
    request=None,
) -> Referral:
    """The API's shape of the partner actions: the Gravity status the partner moves the
    referral to (rejected or failed carry the decline reason as `outcome`)."""
    common = {"by": by, "referral": referral, "expected_version": expected_version, "request": request}
    if status == "accepted":
        return partner_referral_accept(**common)
    if status == "in-progress":
        return partner_referral_start(note=note, **common)
    if status in ("rejected", "failed"):
        return partner_referral_decline(reason=outcome, text=note, **common)
    if status == "completed":
        return partner_referral_complete(outcome=outcome, text=note, **common)
    raise ValidationError({"status": "A service accepts, starts, declines or completes a referral."})
