"""Referrals for services without an account: a signed link to one referral, emailed to
the service's contact. The token signs (referral id, nonce) with a timestamp
(django.core.signing); the nonce is stored (ReferralLink), so a token altered to name
another referral fails the signature, and a token whose nonce does not belong to that
referral finds nothing. Each action (accept, decline, complete) works once through a
link (ReferralLinkUse's unique key), until the link expires. Every use is audited, the
refusals too. The link reveals only that referral's minimum view."""

from __future__ import annotations

import datetime as dt
import secrets

from django.conf import settings
from django.core import signing
from django.core.exceptions import ValidationError
from django.core.mail import send_mail
from django.core.validators import validate_email
from django.db import IntegrityError, transaction
from django.utils import timezone

from careteam.audit import audit
from careteam.models import AccountKind, AuditAction, AuditOutcome, User

from . import partners
from .models import REFERRAL_OPEN_STATUSES, Referral, ReferralLink, ReferralLinkUse

SALT = "referrals.links.ReferralLink"
LINK_ACTIONS = ("accept", "decline", "complete")


class LinkProblem(Exception):
    """Why a link does not work: 'invalid' (altered, unknown), 'expired' or 'used'."""

    def __init__(self, problem: str):
        self.problem = problem
        super().__init__(problem)


def _token(link: ReferralLink) -> str:
    return signing.dumps({"r": link.referral_id, "n": link.nonce}, salt=SALT)


def link_url(link: ReferralLink) -> str:
    return f"{settings.SITE_URL}/partner/link/{_token(link)}/"


@transaction.atomic
def referral_link_create(
    *, access, by: User, referral: Referral, email: str = "", request=None
) -> ReferralLink:
    """Email the service's contact a link to this one sent referral (a team member)."""
    access.require_edit()
    if referral.status not in REFERRAL_OPEN_STATUSES:
        raise ValidationError({"email": "Only a sent, open referral can be emailed to the service."})
    service = referral.service
    email = (email or service.email or service.organization.email or "").strip()
    if not email:
        raise ValidationError({"email": "The service has no email address: give one, or print the letter."})
    try:
        validate_email(email)
    except ValidationError:
        raise ValidationError({"email": "Enter a valid email address."}) from None
    link = ReferralLink.objects.create(
        referral=referral,
        nonce=secrets.token_urlsafe(32),
        email=email,
        created_by=by,
        expires_at=timezone.now() + dt.timedelta(days=settings.REFERRAL_LINK_DAYS),
    )
    url = link_url(link)
    transaction.on_commit(
        lambda: send_mail(
            subject=f"CareTeam: a referral to {service.name}",
            message=(
                f"{by.display_name} referred a client to {service.name}.\n"
                f"Open the referral to accept, decline or complete it (no account needed; the link works "
                f"until {timezone.localtime(link.expires_at):%-d %b %Y}):\n{url}\n"
            ),
            from_email=None,
            recipient_list=[email],
        )
    )
    audit(
        user=by,
        action=AuditAction.CREATE,
        obj=link,
        patient_id=referral.patient_id,
        request=request,
        detail=f"referral link emailed to {email}",
    )
    return link


def _refused(problem: str, *, request, link: ReferralLink | None = None) -> LinkProblem:
    audit(
        user=None,
        action=AuditAction.VIEW,
        outcome=AuditOutcome.DENIED,
        object_type="referrals.referrallink",
        object_id=link.pk if link else "",
        patient_id=link.referral.patient_id if link else None,
        request=request,
        detail=f"referral link refused: {problem}",
    )
    return LinkProblem(problem)


def link_open(token: str, *, request=None) -> ReferralLink:
    """The link this token names while it works; LinkProblem (audited) otherwise."""
    try:
        payload = signing.loads(token, salt=SALT, max_age=dt.timedelta(days=settings.REFERRAL_LINK_DAYS))
        referral_id, nonce = int(payload["r"]), str(payload["n"])
    except signing.SignatureExpired:
        raise _refused("expired", request=request) from None
    except (signing.BadSignature, KeyError, TypeError, ValueError):
        raise _refused("invalid", request=request) from None
    link = (
        ReferralLink.objects.select_related(*(f"referral__{r}" for r in partners.VIEW_RELATED))
        .filter(nonce=nonce, referral_id=referral_id, revoked_at__isnull=True)
        .first()
    )
    if link is None:
        raise _refused("invalid", request=request)
    if link.expires_at <= timezone.now():
        raise _refused("expired", request=request, link=link)
    return link


def audit_link_read(link: ReferralLink, *, request=None) -> None:
    audit(
        user=None,
        action=AuditAction.VIEW,
        obj=link.referral,
        patient_id=link.referral.patient_id,
        request=request,
        detail=f"opened through the link emailed to {link.email}",
    )


def _actor(link: ReferralLink) -> User:
    """Who the log names for an answer through a link: an account that cannot sign in,
    one per contact address, so the history says who answered."""
    username = f"link:{link.email}"[:150]
    user, created = User.objects.get_or_create(
        username=username,
        defaults={
            "email": link.email,
            "kind": AccountKind.PARTNER,
            "is_active": False,
            "first_name": link.email[:150],
            "last_name": "(emailed link)",
        },
    )
    if created:
        user.set_unusable_password()
        user.save(update_fields=["password"])
    return user


@transaction.atomic
def link_act(
    *, token: str, action: str, reason: str = "", outcome: str = "", text: str = "", request=None
) -> Referral:
    """Accept, decline or complete the referral through its link, each once."""
    if action not in LINK_ACTIONS:
        raise ValidationError({"action": "Accept, decline or complete."})
    link = link_open(token, request=request)
    try:
        with transaction.atomic():
            ReferralLinkUse.objects.create(link=link, action=action)
    except IntegrityError:
        raise _refused("used", request=request, link=link) from None
    by = _actor(link)
    common = {"by": by, "referral": link.referral, "via_link": True, "request": request}
    if action == "accept":
        referral = partners.partner_referral_accept(**common)
    elif action == "decline":
        referral = partners.partner_referral_decline(reason=reason, text=text, **common)
    else:
        referral = partners.partner_referral_complete(outcome=outcome, text=text, **common)
    audit(
        user=None,
        action=AuditAction.UPDATE,
        obj=referral,
        patient_id=referral.patient_id,
        request=request,
        detail=f"{action} through the link emailed to {link.email}",
    )
    return referral
