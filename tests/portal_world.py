"""A portal world on top of the `world` fixture: the team patient's own account, a
caregiver with a consent in force, a former caregiver whose consent was revoked, the
other patient's account, and plan items shared, unshared and sensitive (their texts are
what must never reach the portal)."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field

from django.utils import timezone

from careplans import screening
from careplans.models import Questionnaire, QuestionnaireAssignment
from careteam.models import AccountKind, Conversation, Message
from patients.models import Caregiver, Consent
from referrals.models import Location, ServiceAtLocation
from transitions.models import MedicationLine, Reconciliation

from . import factories as f

PASSWORD = "portal-test-password-1"
# what the portal may show, and what it must never show
SHOWN = (
    "SHARED-GOAL-P5",
    "SHARED-ACTIVITY-P5",
    "SHARED-NEED-P5",
    "EXPLICIT-SHARED-NEED-P5",
    "REFERRAL-SERVICE-P5",
)
NEVER = (
    "UNSHARED-GOAL-P5",
    "UNSHARED-NEED-P5",
    "UNSHARED-ACTIVITY-P5",
    "SENSITIVE-NEED-P5",
    "SENSITIVE-ACTIVITY-P5",
    "SENSITIVE-GOAL-P5",
    "HIDDEN-LINKED-GOAL-P5",
    "HIDDEN-REFERRAL-SERVICE-P5",
    "INTERNAL-NOTE-P5",
    "TEAM-TALK-P5",
    "STAFF-ONLY-REPLY-P5",
    "OTHER-PATIENT-GOAL-P5",
    "STOPPED-MED-P5",
    "HOME-LIST-MED-P5",
    "PRESCRIBER-INTERNAL-P5",
    "RECONCILIATION-NOTE-P5",
    "OTHER-PATIENT-MED-P5",
    "P-OTHER-1",
    "Elsewhere",
)


@dataclass
class Portal:
    world: object
    patient_user: object
    caregiver_user: object
    former_user: object
    other_patient_user: object
    caregiver: object
    consent: object
    former_consent: object
    items: dict = field(default_factory=dict)
    assignment: object = None


def build_portal(world) -> Portal:
    today = timezone.localdate()
    patient, plan = world.patient, world.plan
    bh = world.behavioural_health
    nursing = f.discipline("nursing")

    def account(username, kind):
        user = f.UserFactory(username=username, kind=kind, disciplines=[])
        user.set_password(PASSWORD)
        user.save()
        return user

    patient_user = account("pat1", AccountKind.PATIENT)
    patient.account = patient_user
    patient.save(update_fields=["account"])
    other_user = account("pat2", AccountKind.PATIENT)
    world.other_patient.account = other_user
    world.other_patient.save(update_fields=["account"])

    caregiver_user = account("care1", AccountKind.CAREGIVER)
    former_user = account("care2", AccountKind.CAREGIVER)
    caregiver = Caregiver.objects.create(
        patient=patient, name="Carmen Daughter", relationship="child", account=caregiver_user
    )
    former = Caregiver.objects.create(
        patient=patient, name="Fred Former", relationship="friend", account=former_user
    )
    consent = Consent.objects.create(
        patient=patient,
        scope="caregiver",
        caregiver=caregiver,
        caregiver_access="message",
        date_given=today - dt.timedelta(days=3),
    )
    former_consent = Consent.objects.create(
        patient=patient,
        scope="caregiver",
        caregiver=former,
        caregiver_access="act",
        date_given=today - dt.timedelta(days=30),
        status="inactive",
        revoked_at=timezone.now(),
        revoke_reason="Patient withdrew it",
    )

    items = {}
    items["goal"] = f.GoalFactory(care_plan=plan, description="SHARED-GOAL-P5", expressed_by="patient")
    items["unshared_goal"] = f.GoalFactory(
        care_plan=plan, description="UNSHARED-GOAL-P5", shared_with_patient=False
    )
    items["sensitive_goal"] = f.GoalFactory(care_plan=plan, description="SENSITIVE-GOAL-P5", sensitivity=bh)
    items["need"] = f.NeedFactory(care_plan=plan, description="SHARED-NEED-P5")
    items["unshared_need"] = f.NeedFactory(
        care_plan=plan, description="UNSHARED-NEED-P5", shared_with_patient=False
    )
    items["sensitive_need"] = f.NeedFactory(
        care_plan=plan,
        description="SENSITIVE-NEED-P5",
        sensitivity=bh,
        domain="behavioural",
        category="mental-health",
    )
    items["explicit_need"] = f.NeedFactory(
        care_plan=plan,
        description="EXPLICIT-SHARED-NEED-P5",
        sensitivity=bh,
        shared_sensitivity=bh,
        domain="behavioural",
        category="mental-health",
    )
    # a goal that exists only for a sensitive need: hidden with it
    linked = f.GoalFactory(care_plan=plan, description="HIDDEN-LINKED-GOAL-P5")
    items["sensitive_need"].goals.add(linked)
    items["linked_goal"] = linked
    items["activity"] = f.ActivityFactory(
        care_plan=plan,
        title="SHARED-ACTIVITY-P5",
        owner_discipline=nursing,
        for_patient=True,
        due_date=today + dt.timedelta(days=3),
    )
    items["activity"].goals.add(items["goal"], items["unshared_goal"])
    items["unshared_activity"] = f.ActivityFactory(
        care_plan=plan, title="UNSHARED-ACTIVITY-P5", shared_with_patient=False
    )
    items["sensitive_activity"] = f.ActivityFactory(
        care_plan=plan, title="SENSITIVE-ACTIVITY-P5", sensitivity=bh
    )
    items["note"] = f.NoteFactory(
        care_plan=plan, goal=items["goal"], text="INTERNAL-NOTE-P5", author=world.nurse
    )
    # referrals: one for a shown need, one for a sensitive need
    service = f.ServiceFactory(name="REFERRAL-SERVICE-P5", phone="555-0100")
    location = Location.objects.create(
        organization=service.organization, name="Main office", address_1="12 Harbour Road", city="Springfield"
    )
    ServiceAtLocation.objects.create(service=service, location=location)
    hidden_service = f.ServiceFactory(name="HIDDEN-REFERRAL-SERVICE-P5")
    referral_consent = Consent.objects.create(
        patient=patient, scope="referral", date_given=today - dt.timedelta(days=3)
    )
    items["referral"] = f.ReferralFactory(
        patient=patient,
        care_plan=plan,
        need=items["need"],
        service=service,
        referred_by=world.case_manager,
        status="requested",
        sent_at=timezone.now(),
        consent=referral_consent,
    )
    items["hidden_referral"] = f.ReferralFactory(
        patient=patient,
        care_plan=plan,
        need=items["sensitive_need"],
        service=hidden_service,
        referred_by=world.case_manager,
        status="requested",
        sent_at=timezone.now(),
        consent=referral_consent,
    )
    # a team conversation (never shown) and the patient's thread with a staff-only reply
    talk = Conversation.objects.create(patient=patient, subject="TEAM-TALK-P5", started_by=world.nurse)
    Message.objects.create(conversation=talk, author=world.nurse, text="TEAM-TALK-P5 message")
    thread = Conversation.objects.create(
        patient=patient,
        subject="Messages with the patient and family",
        started_by=world.case_manager,
        with_patient=True,
    )
    Message.objects.create(conversation=thread, author=world.case_manager, text="STAFF-ONLY-REPLY-P5")
    Message.objects.create(
        conversation=thread, author=world.case_manager, text="REPLY-TO-PATIENT-P5", to_patient=True
    )
    items["thread"] = thread
    f.GoalFactory(care_plan=world.other_plan, description="OTHER-PATIENT-GOAL-P5")
    # medications: the reconciled list (one active line shown on the schedule, one
    # stopped), a source list that was never reconciled, and the other patient's list
    items["reconciliation"] = _reconciled(
        world,
        patient,
        [
            {"name": "SCHEDULED-MED-P5", "dose": "500 mg", "timing": "with breakfast", "times": ["morning"]},
            {"name": "STOPPED-MED-P5", "status": "stopped", "times": ["morning"]},
        ],
    )
    MedicationLine.objects.create(
        patient=patient, source="home", name="HOME-LIST-MED-P5", times=["morning"], recorded_by=world.nurse
    )
    _reconciled(world, world.other_patient, [{"name": "OTHER-PATIENT-MED-P5", "times": ["morning"]}])
    # a questionnaire the team asked the patient to answer (Hunger Vital Sign)
    screening.ensure_shipped_questionnaires()
    assignment = QuestionnaireAssignment.objects.create(
        patient=patient,
        care_plan=plan,
        questionnaire=Questionnaire.objects.filter(name="HUNGER_VITAL_SIGN").latest("id"),
        assigned_by=world.case_manager,
    )
    return Portal(
        world=world,
        patient_user=patient_user,
        caregiver_user=caregiver_user,
        former_user=former_user,
        other_patient_user=other_user,
        caregiver=caregiver,
        consent=consent,
        former_consent=former_consent,
        items=items,
        assignment=assignment,
    )


def _reconciled(world, patient, lines: list[dict]) -> Reconciliation:
    number = Reconciliation.objects.filter(patient=patient).count() + 1
    rec = Reconciliation.objects.create(
        patient=patient,
        sources=["home", "discharge"],
        number=number,
        signed_by=world.pharmacist,
        note="RECONCILIATION-NOTE-P5",
    )
    for fields in lines:
        MedicationLine.objects.create(
            patient=patient,
            source="reconciled",
            reconciliation=rec,
            prescriber="PRESCRIBER-INTERNAL-P5",
            recorded_by=world.pharmacist,
            **fields,
        )
    return rec
