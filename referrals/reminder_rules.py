# SQL here is composed only from module constants; every value is a bound parameter.
# ruff: noqa: S608
"""The reminder sweep's rule for partner organisations (registered with
careteam.reminders in ReferralsConfig.ready()): a referral still waiting for the
service's answer after its expected response days reminds the organisation's partner
staff, once (one row per (recipient, referral, due moment), as every reminder). The
referrer's own reminder comes PARTNER_REFERRER_REMINDER_DAYS later (the sweep's
REFERRAL_NO_RESPONSE rule). The notification names no patient record: partners see
only their inbox."""

from __future__ import annotations

from careteam.models import NotificationKind
from careteam.reminders import Rule, days

_DUE = "r.sent_at + s.expected_response_days * interval '1 day'"

PARTNER_WAITING = Rule(
    kind=NotificationKind.REFERRAL_PARTNER_WAITING,
    due_moment=_DUE,
    object_type="referrals.referral",
    lock="r",
    due_sql=f"""
        SELECT r.id AS object_id, NULL::bigint AS patient_id, s.organization_id,
               {_DUE} AS due_moment,
               'Referral #' || r.id || ' to ''' || s.name || ''' has waited for your answer for '
                   || {days("extract(day FROM %(now)s - r.sent_at)::int")} AS title,
               '/partner/referrals/' || r.id || '/' AS url, NULL::bigint AS sensitivity_id
        FROM referrals_referral r
        JOIN referrals_service s ON s.id = r.service_id
        WHERE r.status = 'requested' AND r.responded_at IS NULL AND r.sent_at IS NOT NULL
          AND NOT r.tracked_by_referrer AND {_DUE} <= %(now)s""",
    recipients_sql="""
        SELECT d.*, ps.user_id AS recipient_id FROM d
        JOIN referrals_partnerstaff ps ON ps.organization_id = d.organization_id AND ps.active""",
    # partner staff of the organisation, active partner accounts (the join above and the
    # INSERT's own u.is_active): they see the referrals of their organisation's services
    can_see="u.kind = 'partner'",
)

RULES = (PARTNER_WAITING,)
