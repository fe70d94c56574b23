# SQL here is composed only from module constants; every value is a bound parameter.
# ruff: noqa: S608
"""The reminder sweep's portal rule: the case manager is reminded, once, of the patient's
(or caregiver's) latest message in their thread with the team when no reply marked "to
patient" followed it within PORTAL_MESSAGE_REMINDER_HOURS. The due moment is the
message's own time plus that delay, so the unique key of careteam.Notification holds it
to one reminder whatever the sweeps do (careteam/reminders.py)."""

from careteam.models import NotificationKind
from careteam.reminders import CASE_MANAGER, PATIENT_NAME, Rule

UNANSWERED_MESSAGE = Rule(
    kind=NotificationKind.PORTAL_MESSAGE_UNANSWERED,
    due_moment="msg.created_at + %(portal_reply)s",
    object_type="careteam.message",
    lock="msg",
    due_sql=f"""
        SELECT msg.id AS object_id, c.patient_id,
               msg.created_at + %(portal_reply)s AS due_moment,
               'A message from the ' || au.kind || ' has had no reply (' || {PATIENT_NAME} || ')' AS title,
               '/patients/' || c.patient_id || '/conversations/' || c.id || '/' AS url,
               NULL::bigint AS sensitivity_id
        FROM careteam_message msg
        JOIN careteam_conversation c ON c.id = msg.conversation_id
        JOIN careteam_user au ON au.id = msg.author_id
        JOIN patients_patient pt ON pt.id = c.patient_id
        WHERE c.with_patient AND au.kind IN ('patient', 'caregiver') AND msg.retracted_at IS NULL
          AND msg.created_at + %(portal_reply)s <= %(now)s
          AND NOT EXISTS (
              SELECT 1 FROM careteam_message later
              WHERE later.conversation_id = c.id AND later.id > msg.id AND later.retracted_at IS NULL
                AND (later.to_patient OR later.author_id IN (
                    SELECT u.id FROM careteam_user u WHERE u.kind IN ('patient', 'caregiver')))
          )""",
    recipients_sql=CASE_MANAGER,
)
