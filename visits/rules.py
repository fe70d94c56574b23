"""Rules that hand on the work: when an event happens (an authorisation approved, a
referral accepted, a discharge recorded, a visit missed), the admin-managed
`HandOnRule`s for it create the next activity on the patient's plan through the
care-plan services.

- Idempotent: each (rule, event, object) is claimed with one
  `INSERT ... ON CONFLICT DO NOTHING` on `RuleFiring`'s unique key before anything is
  created, so the same event saved twice, even at the same moment from two requests,
  fires a rule once (the second insert waits for the first transaction and then does
  nothing).
- Recorded on the plan history: each firing is an entry of its own (when, which rule,
  which event, the activity; `visits.selectors.plan_firings`), and the activity's first
  version says which rule made it.
- Acts with the team's authority: a rule is the organisation's decision, so the
  activity is filed with the access of the patient's case manager (else the plan lead)
  while the history and audit name the person whose action fired it.

Other apps call `rules_fire(event=..., obj=..., by=...)` directly or report the event
with `careteam.events.emit` (the referral services do).
"""

from __future__ import annotations

import datetime as dt
import logging

from django.core.exceptions import PermissionDenied, ValidationError
from django.db import connection, transaction
from django.utils import timezone

from careplans import services as plan_services
from careplans.models import CarePlan, TemplateItem
from careteam.audit import audit
from careteam.models import AuditAction, TeamMembership, TeamRole, User
from careteam.permissions import PatientAccess, patient_access

from .models import HandOnRule, RuleAssignee, RuleEvent, RuleFiring
from .services import careplan_for

logger = logging.getLogger(__name__)


def on_work_event(sender, *, event: str, obj, by, access=None, **kwargs) -> None:
    """careteam.events receiver."""
    rules_fire(event=event, obj=obj, by=by, access=access)


def _claim(rule: HandOnRule, event: str, obj, patient_id: int, by: User | None) -> int | None:
    with connection.cursor() as cursor:
        cursor.execute(
            f"""INSERT INTO {RuleFiring._meta.db_table}
                (rule_id, event, object_type, object_id, patient_id, fired_by_id, fired_at, outcome)
                VALUES (%s, %s, %s, %s, %s, %s, %s, '')
                ON CONFLICT (rule_id, event, object_type, object_id) DO NOTHING RETURNING id""",  # noqa: S608 - the table name is the model's
            [
                rule.pk,
                event,
                obj._meta.label_lower,
                obj.pk,
                patient_id,
                getattr(by, "pk", None),
                timezone.now(),
            ],
        )
        row = cursor.fetchone()
    return row[0] if row else None


def _applies(rule: HandOnRule, obj, plan: CarePlan | None) -> bool:
    if rule.condition_discipline_id is not None and (
        getattr(obj, "discipline_id", None) != rule.condition_discipline_id
    ):
        return False
    if rule.condition_template:
        if plan is None:
            return False
        if not TemplateItem.objects.filter(care_plan=plan, template_slug=rule.condition_template).exists():
            return False
    return True


def _authority(patient, access: PatientAccess | None, by) -> PatientAccess | None:
    """The access a rule files its activity with: the actor's when they may file for any
    discipline, else the case manager's, else the plan lead's, else the actor's."""
    if access is not None and access.can_edit_any:
        return access
    for role in (TeamRole.CASE_MANAGER, TeamRole.LEAD):
        member = (
            TeamMembership.objects.current()
            .filter(patient=patient, role=role, user__is_active=True)
            .select_related("user")
            .order_by("id")
            .first()
        )
        if member is not None:
            authority = patient_access(member.user, patient)
            if authority.can_edit_any:
                return authority
    if access is None and by is not None:
        access = patient_access(by, patient)
    return access if access is not None and access.on_team else None


def _owner(rule: HandOnRule, obj, by, memberships: list[TeamMembership]):
    """(owner discipline, assignee) for the activity."""
    person = None
    if rule.assignee == RuleAssignee.REFERRER:
        person = getattr(obj, "referred_by", None)
    elif rule.assignee == RuleAssignee.ACTOR:
        person = by
    if person is not None:
        held = [m for m in memberships if m.user_id == person.pk]
        if rule.owner_discipline_id is not None:
            held_owner = [m for m in held if m.discipline_id == rule.owner_discipline_id]
            return rule.owner_discipline, (person if held_owner or held else None)
        if held:
            return held[0].discipline, person
        return None, None
    of_discipline = {m.user_id: m.user for m in memberships if m.discipline_id == rule.owner_discipline_id}
    sole = next(iter(of_discipline.values())) if len(of_discipline) == 1 else None
    return rule.owner_discipline, sole


def _source_sensitivity(obj) -> int | None:
    """The category of what fired the rule (its own, else its need's: a referral made from
    a behavioural-health need). The activity it makes carries it, so a discipline kept
    from the need is kept from the activity, its title and its firing too."""
    own = getattr(obj, "sensitivity_id", None)
    if own is not None:
        return own
    return getattr(getattr(obj, "need", None), "sensitivity_id", None)


@transaction.atomic
def rules_fire(*, event: str, obj, by: User | None, access: PatientAccess | None = None) -> list[RuleFiring]:
    """Fire every active rule for `event` about `obj` (any model with a patient and,
    optionally, a care plan) once. Returns the firings made by this call (none when
    they had fired already)."""
    if event not in RuleEvent.values:
        raise ValueError(f"Unknown event {event!r}; known: {', '.join(RuleEvent.values)}")
    rules = list(HandOnRule.objects.filter(event=event, active=True).select_related("owner_discipline"))
    if not rules:
        return []
    patient = obj.patient
    plan = getattr(obj, "care_plan", None)
    if plan is None or plan.status not in ("active", "draft", "on-hold"):
        plan = careplan_for(patient.pk)
    fired: list[RuleFiring] = []
    memberships = list(
        TeamMembership.objects.current().filter(patient=patient).select_related("user", "discipline")
    )
    label = dict(RuleEvent.choices)[event]
    for rule in rules:
        if not _applies(rule, obj, plan):
            continue
        firing_id = _claim(rule, event, obj, patient.pk, by)
        if firing_id is None:
            continue  # fired for this event already
        outcome, activity = "", None
        authority = _authority(patient, access, by)
        discipline, assignee = _owner(rule, obj, by, memberships)
        if plan is None:
            outcome = "no open care plan: nothing created"
        elif authority is None:
            outcome = "nobody on the team to file it: nothing created"
        elif discipline is None:
            outcome = "no discipline to own the activity: nothing created"
        else:
            try:
                # a savepoint: a rule that cannot file its activity never undoes the event
                with transaction.atomic():
                    activity = plan_services.activity_create(
                        access=authority,
                        plan=plan,
                        by=by or authority.user,
                        title=rule.activity_title[:200],
                        description=rule.activity_description,
                        owner_discipline=discipline,
                        assigned_to=assignee,
                        due_date=timezone.localdate() + dt.timedelta(days=rule.due_in_days),
                        sensitivity_id=_source_sensitivity(obj),
                    )
            except (ValidationError, PermissionDenied) as exc:
                logger.warning("rule %s on %s %s refused: %s", rule.pk, event, obj.pk, exc)
                outcome = "refused: " + " ".join(getattr(exc, "messages", [str(exc)]))
            else:
                stamp = f"by rule '{rule.name}' ({label.lower()})"[:100]
                activity.history.filter(history_type="+").update(history_change_reason=stamp)
                outcome = f"activity {activity.pk} created"
        RuleFiring.objects.filter(pk=firing_id).update(
            care_plan=plan, activity=activity, outcome=outcome[:300]
        )
        audit(
            user=by,
            action=AuditAction.UPDATE,
            obj=plan if plan is not None else patient,
            patient=patient,
            detail=f"rule {rule.pk} fired on {event} {obj._meta.label_lower} {obj.pk}: {outcome}",
        )
        fired.append(RuleFiring.objects.get(pk=firing_id))
    return fired
