# SQL here is composed only from module constants; every value is a bound parameter.
# ruff: noqa: S608
"""The reminder sweep's rules for visits and authorisations (registered with
careteam.reminders in VisitsConfig.ready()). Each is one INSERT ... SELECT ... ON
CONFLICT DO NOTHING like the sweep's own, so each reminder is one database row, made
once: its due moment comes from the object, never from "now".

- the clinician, VISIT_REMINDER_HOURS before a booked visit;
- the case manager, AUTHORISATION_EXPIRY_WARNING_DAYS before an approved authorisation
  ends; when AUTHORISATION_UNITS_WARNING units or fewer are left (once per
  authorisation); when its last unit is used (once per time it runs out); and when a
  request has had no answer for AUTHORISATION_REQUEST_WARNING_DAYS; and when the sweep
  expired it (its end date passed: `visits.services.authorisations_expire`, a step the
  sweep runs before these rules, registered in VisitsConfig.ready()).
"""

from __future__ import annotations

from careteam.models import NotificationKind
from careteam.reminders import CASE_MANAGER, PATIENT_NAME, Rule

from .models import VisitType

_VISIT_LABEL = (
    "CASE v.visit_type "
    + " ".join(f"WHEN '{value}' THEN '{label}'" for value, label in VisitType.choices)
    + " ELSE 'Visit' END"
)
_AUTH = "'Authorisation ''' || a.service || ''' (' || a.payer || ')'"


def _authorisation_due(due_moment: str, title: str, where: str) -> str:
    return f"""
            SELECT a.id AS object_id, a.patient_id, {due_moment} AS due_moment,
                   {title} || ' (' || {PATIENT_NAME} || ')' AS title,
                   '/visits/authorisations/' || a.id || '/' AS url, NULL::bigint AS sensitivity_id
            FROM visits_authorisation a JOIN patients_patient pt ON pt.id = a.patient_id
            WHERE {where}"""


_EXPIRY = "(a.end_date::timestamp AT TIME ZONE %(tz)s) - %(auth_expiry)s"
_REQUEST = "a.requested_at + %(auth_request)s"

RULES: tuple[Rule, ...] = (
    Rule(
        kind=NotificationKind.VISIT_REMINDER,
        due_moment="v.start - %(visit_soon)s",
        object_type="visits.visit",
        lock="v",
        due_sql=f"""
            SELECT v.id AS object_id, v.patient_id, v.clinician_id, v.start - %(visit_soon)s AS due_moment,
                   {_VISIT_LABEL} || ' at ' || to_char(v.start AT TIME ZONE v.time_zone, 'DD Mon HH24:MI')
                       || ' (' || {PATIENT_NAME} || ')' AS title,
                   '/visits/' || v.id || '/' AS url, NULL::bigint AS sensitivity_id
            FROM visits_visit v JOIN patients_patient pt ON pt.id = v.patient_id
            WHERE v.status = 'booked' AND v.clinician_id IS NOT NULL
              AND v.start > %(now)s AND v.start - %(visit_soon)s <= %(now)s""",
        recipients_sql="SELECT d.*, d.clinician_id AS recipient_id FROM d",
    ),
    Rule(
        kind=NotificationKind.AUTHORISATION_EXPIRING,
        due_moment=_EXPIRY,
        object_type="visits.authorisation",
        lock="a",
        due_sql=_authorisation_due(
            _EXPIRY,
            f"{_AUTH} || ' ends on ' || to_char(a.end_date, 'DD Mon YYYY')",
            f"a.status = 'approved' AND a.end_date >= %(today)s AND {_EXPIRY} <= %(now)s",
        ),
        recipients_sql=CASE_MANAGER,
    ),
    Rule(
        kind=NotificationKind.AUTHORISATION_UNITS_LOW,
        due_moment="a.created_at",
        object_type="visits.authorisation",
        lock="a",
        due_sql=_authorisation_due(
            "a.created_at",
            f"{_AUTH} || ' has ' || (a.units_authorised - a.units_used) || ' of ' || a.units_authorised || ' left'",
            "a.status = 'approved' AND a.units_used < a.units_authorised"
            " AND a.units_authorised - a.units_used <= %(auth_units)s",
        ),
        recipients_sql=CASE_MANAGER,
    ),
    Rule(
        kind=NotificationKind.AUTHORISATION_EXHAUSTED,
        due_moment="a.exhausted_at",
        object_type="visits.authorisation",
        lock="a",
        due_sql=_authorisation_due(
            "a.exhausted_at",
            f"{_AUTH} || ' is used up (' || a.units_used || ' of ' || a.units_authorised || ')'",
            "a.status = 'exhausted' AND a.exhausted_at IS NOT NULL",
        ),
        recipients_sql=CASE_MANAGER,
    ),
    Rule(
        kind=NotificationKind.AUTHORISATION_EXPIRED,
        due_moment="a.expired_at",
        object_type="visits.authorisation",
        lock="a",
        due_sql=_authorisation_due(
            "a.expired_at",
            f"{_AUTH} || ' expired: it ended on ' || to_char(a.end_date, 'DD Mon YYYY')",
            "a.status = 'expired' AND a.expired_at IS NOT NULL",
        ),
        recipients_sql=CASE_MANAGER,
    ),
    Rule(
        kind=NotificationKind.AUTHORISATION_UNANSWERED,
        due_moment=_REQUEST,
        object_type="visits.authorisation",
        lock="a",
        due_sql=_authorisation_due(
            _REQUEST,
            f"{_AUTH} || ' has had no answer since ' || to_char(a.requested_at, 'DD Mon YYYY')",
            f"a.status = 'requested' AND {_REQUEST} <= %(now)s",
        ),
        recipients_sql=CASE_MANAGER,
    ),
)
