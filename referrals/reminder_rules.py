# SQL here is composed only from module constants; every value is a bound parameter.
# ruff: noqa: S608
"""The reminder sweep's rules for referrals (registered with careteam.reminders in
ReferralsConfig.ready()). The referrer is reminded of a referral without reply
(REFERRAL_NO_RESPONSE). For partner organisations: a referral still waiting for the
service's answer after its expected response days reminds the organisation's partner
staff, once (one row per (recipient, referral, due moment), as every reminder). The
referrer's own reminder comes PARTNER_REFERRER_REMINDER_DAYS later (NO_RESPONSE). The notification names no patient record: partners see
only their inbox."""

from __future__ import annotations

from careteam.models import NotificationKind
from careteam.reminders import PATIENT_NAME, Rule, days

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

# The referrer is reminded of a referral without reply after the service's expected
# response days; a service that answers for itself (partner staff, so not tracked by the
# referrer) is reminded first, and the referrer PARTNER_REFERRER_REMINDER_DAYS later.
_REFERRAL_DUE = (
    "r.sent_at + (s.expected_response_days"
    " + CASE WHEN r.tracked_by_referrer THEN 0 ELSE %(partner_grace)s END) * interval '1 day'"
)

NO_RESPONSE = Rule(
    kind=NotificationKind.REFERRAL_NO_RESPONSE,
    due_moment=_REFERRAL_DUE,
    object_type="referrals.referral",
    lock="r",
    due_sql=f"""
            SELECT r.id AS object_id, r.patient_id, r.referred_by_id,
                   {_REFERRAL_DUE} AS due_moment,
                   'Referral to ''' || s.name || ''' has had no reply for ' || {days("extract(day FROM %(now)s - r.sent_at)::int")} || ' (' || {PATIENT_NAME} || ')' AS title,
                   '' AS url, NULL::bigint AS sensitivity_id
            FROM referrals_referral r
            JOIN referrals_service s ON s.id = r.service_id
            JOIN patients_patient pt ON pt.id = r.patient_id
            WHERE r.status = 'requested' AND r.responded_at IS NULL AND r.sent_at IS NOT NULL
              AND {_REFERRAL_DUE} <= %(now)s""",
    recipients_sql="SELECT d.*, d.referred_by_id AS recipient_id FROM d",
)

RULES = (NO_RESPONSE, PARTNER_WAITING)
