"""Signal receivers of the care-team app."""

from django.contrib.auth.signals import user_logged_in, user_login_failed
from django.db.models.signals import pre_save
from django.dispatch import receiver

from .audit import audit
from .models import AuditAction, AuditOutcome, User


@receiver(user_logged_in, dispatch_uid="careteam.audit_login")
def audit_login(sender, request, user, **kwargs) -> None:
    """Sign-ins belong in the audit trail: who was at the keyboard, from where."""
    audit(
        user=user, action=AuditAction.LOGIN, request=request, object_type="careteam.user", object_id=user.pk
    )


@receiver(user_login_failed, dispatch_uid="careteam.audit_login_failed")
def audit_login_failed(sender, credentials, request=None, **kwargs) -> None:
    username = str((credentials or {}).get("username", ""))[:150]
    what = "wrong one-time code" if (credentials or {}).get("second_factor") else "failed sign-in"
    audit(
        user=None,
        action=AuditAction.LOGIN,
        outcome=AuditOutcome.DENIED,
        request=request,
        object_type="careteam.user",
        detail=f"{what} as {username!r}",
    )


@receiver(pre_save, sender=User, dispatch_uid="careteam.revoke_tokens")
def revoke_tokens_on_password_change_or_deactivation(sender, instance, raw=False, **kwargs) -> None:
    """A new password or a deactivated account ends every API token of the account
    (browser sessions end by themselves: their hash includes the password)."""
    if raw or instance.pk is None:
        return
    # set_password() since the row was loaded; or an inactive account (idempotent)
    if getattr(instance, "_password", None) is not None or not instance.is_active:
        from .api.auth import tokens_revoke_all

        tokens_revoke_all(instance.pk)
