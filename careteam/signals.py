"""Signal receivers of the care-team app."""

from django.contrib.auth.signals import user_logged_in, user_login_failed
from django.dispatch import receiver

from .audit import audit
from .models import AuditAction, AuditOutcome


@receiver(user_logged_in, dispatch_uid="careteam.audit_login")
def audit_login(sender, request, user, **kwargs) -> None:
    """Sign-ins belong in the audit trail: who was at the keyboard, from where."""
    audit(
        user=user, action=AuditAction.LOGIN, request=request, object_type="careteam.user", object_id=user.pk
    )


@receiver(user_login_failed, dispatch_uid="careteam.audit_login_failed")
def audit_login_failed(sender, credentials, request=None, **kwargs) -> None:
    username = str((credentials or {}).get("username", ""))[:150]
    audit(
        user=None,
        action=AuditAction.LOGIN,
        outcome=AuditOutcome.DENIED,
        request=request,
        object_type="careteam.user",
        detail=f"failed sign-in as {username!r}",
    )
