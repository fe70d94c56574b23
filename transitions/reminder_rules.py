# SQL here is composed only from module constants; every value is a bound parameter.
# ruff: noqa: S608
"""The reminder sweep's rule for care transitions (registered with careteam.reminders in
TransitionsConfig.ready()), so the sweep reads no table of this app: the case manager is
prompted to debrief a discharge DEBRIEF_FROM_DAYS after it, while it is not recorded and
at most DEBRIEF_UNTIL_DAYS after."""

from __future__ import annotations

import datetime as dt

from careteam.models import NotificationKind
from careteam.reminders import CASE_MANAGER, PATIENT_NAME, Rule

from .models import DEBRIEF_FROM_DAYS, DEBRIEF_UNTIL_DAYS

DEBRIEF_DUE = Rule(
    kind=NotificationKind.DEBRIEF_DUE,
    due_moment="t.occurred_at + %(debrief_from)s",
    object_type="transitions.transition",
    lock="t",
    # The care-transitions app's debrief: 7 days after a discharge, while it is not
    # recorded and at most 30 days after; the case manager is prompted once (the due
    # moment is the discharge's, so the unique key holds it to one row).
    due_sql=f"""
            SELECT t.id AS object_id, t.patient_id,
                   t.occurred_at + %(debrief_from)s AS due_moment,
                   'Debrief the discharge of ' || to_char(t.occurred_at AT TIME ZONE %(tz)s, 'DD Mon YYYY') || ' with the team (' || {PATIENT_NAME} || ')' AS title,
                   '/transitions/' || t.id || '/debrief/' AS url, NULL::bigint AS sensitivity_id
            FROM transitions_transition t JOIN patients_patient pt ON pt.id = t.patient_id
            WHERE t.kind = 'discharge' AND t.status = 'finished'
              AND t.occurred_at + %(debrief_from)s <= %(now)s AND t.occurred_at + %(debrief_until)s >= %(now)s
              AND NOT EXISTS (SELECT 1 FROM transitions_debrief db WHERE db.transition_id = t.id)""",
    recipients_sql=CASE_MANAGER,
    params={
        "debrief_from": dt.timedelta(days=DEBRIEF_FROM_DAYS),
        "debrief_until": dt.timedelta(days=DEBRIEF_UNTIL_DAYS),
    },
)

RULES = (DEBRIEF_DUE,)
