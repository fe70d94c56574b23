# SQL here is composed only from module constants; every value is a bound parameter.
# ruff: noqa: S608
"""The reminder sweep's rules for care plans (registered with careteam.reminders in
CareplansConfig.ready()), so the sweep reads no table of this app:

- an open activity past its due date reminds whoever it is assigned to, or, assigned to
  nobody, every current member of its owning discipline (sensitive activities only the
  disciplines their category allows: the sweep's team rule, careteam.permissions);
- an active plan whose review date has come reminds the patient's case manager.
"""

from __future__ import annotations

from careteam.models import NotificationKind
from careteam.permissions import current_member_sql
from careteam.reminders import CASE_MANAGER, PATIENT_NAME, Rule, days

from .models import ACTIVITY_OPEN_STATUSES

RULES: tuple[Rule, ...] = (
    Rule(
        kind=NotificationKind.ACTIVITY_OVERDUE,
        due_moment="((a.due_date + 1)::timestamp AT TIME ZONE %(tz)s)",
        object_type="careplans.activity",
        lock="a",
        # Due at the start of the day after its due date, in the site's time zone.
        due_sql=f"""
            SELECT a.id AS object_id, cp.patient_id, a.assigned_to_id, a.owner_discipline_id,
                   ((a.due_date + 1)::timestamp AT TIME ZONE %(tz)s) AS due_moment,
                   'Activity ''' || a.title || ''' is ' || {days("%(today)s::date - a.due_date")} || ' overdue (' || {PATIENT_NAME} || ')' AS title,
                   '' AS url, a.sensitivity_id
            FROM careplans_activity a
            JOIN careplans_careplan cp ON cp.id = a.care_plan_id
            JOIN patients_patient pt ON pt.id = cp.patient_id
            WHERE a.status = ANY(%(activity_open)s) AND a.due_date < %(today)s AND cp.status = 'active'""",
        recipients_sql=f"""
            SELECT d.*, d.assigned_to_id AS recipient_id FROM d WHERE d.assigned_to_id IS NOT NULL
            UNION ALL
            SELECT d.*, m.user_id FROM d JOIN careteam_teammembership m
              ON {current_member_sql("d.patient_id", "m.discipline_id = d.owner_discipline_id")}
            WHERE d.assigned_to_id IS NULL""",
        params={"activity_open": list(ACTIVITY_OPEN_STATUSES)},
    ),
    Rule(
        kind=NotificationKind.PLAN_REVIEW_DUE,
        due_moment="(cp.review_due::timestamp AT TIME ZONE %(tz)s)",
        object_type="careplans.careplan",
        lock="cp",
        due_sql=f"""
            SELECT cp.id AS object_id, cp.patient_id,
                   (cp.review_due::timestamp AT TIME ZONE %(tz)s) AS due_moment,
                   'Review of care plan ''' || cp.title || ''' is ' || CASE WHEN cp.review_due = %(today)s THEN 'due today' ELSE {days("%(today)s::date - cp.review_due")} || ' overdue' END || ' (' || {PATIENT_NAME} || ')' AS title,
                   '' AS url, NULL::bigint AS sensitivity_id
            FROM careplans_careplan cp JOIN patients_patient pt ON pt.id = cp.patient_id
            WHERE cp.status = 'active' AND cp.review_due <= %(today)s""",
        recipients_sql=CASE_MANAGER,
    ),
)
