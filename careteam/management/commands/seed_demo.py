"""Load realistic demo data: users of every discipline, patients with full care teams,
living plans, open handoffs, referrals and a community catalog. Safe to run twice."""

from __future__ import annotations

import datetime as dt
import os
import uuid
from datetime import timedelta

from django.apps import apps
from django.contrib.auth.models import Group, Permission
from django.core.management import call_command
from django.core.management.base import BaseCommand
from django.db import transaction
from django.utils import timezone
from django.utils.text import slugify

from careplans import services as plan_services
from careplans.models import ACTIVITY_INITIAL_STATUSES, CarePlan
from careteam import conversations as conversation_services
from careteam import huddles as huddle_services
from careteam import services as team_services
from careteam.demo.catalog import CAPACITY, CATALOG, TAXONOMY
from careteam.demo.patients import PATIENTS
from careteam.models import AccountKind, Discipline, Handoff, Huddle, SensitivityCategory, User
from careteam.permissions import patient_access
from careteam.reference import ensure_reference_data
from patients.models import Caregiver, Consent, Patient
from referrals import services as referral_services
from referrals.models import (
    ListingChange,
    Organization,
    PartnerStaff,
    Referral,
    ReferralEvent,
    Service,
    Taxonomy,
    TaxonomyTerm,
)

# username, first, last, title, discipline codes
DEMO_USERS = [
    ("physician", "Priya", "Raman", "MD", ["physician"]),
    ("nurse", "Tom", "Ellis", "RN", ["nursing"]),
    ("casemanager", "Carmen", "Diaz", "RN, CCM", ["case-management", "nursing"]),
    ("socialworker", "Sam", "Okoye", "MSW", ["social-work", "case-management"]),
    ("pharmacist", "Hana", "Kim", "PharmD", ["pharmacy"]),
    ("physio", "Leo", "Marsh", "DPT", ["physical-therapy"]),
    ("dietitian", "Ana", "Silva", "RD", ["dietetics"]),
    ("behavioral", "Ruth", "Adeyemi", "LCSW", ["behavioural-health"]),
    ("homehealth", "Joe", "Brennan", "RN", ["home-health", "nursing"]),
    ("outsider", "Olivia", "Stone", "RN", ["nursing"]),
    ("supervisor", "Grace", "Mendel", "RN, CCM", ["case-management"]),
]
CATALOG_ADMINS = "Catalog administrators"
CASELOAD_SUPERVISORS = "Caseload supervisors"
DEMO_ACUITY = ("high", "medium", "low", "medium", "high", "low", "medium", "low", "medium")


class Command(BaseCommand):
    help = "Load demo users, patients, care plans, handoffs, referrals and a service catalog (idempotent)."

    def handle(self, *args, **options) -> None:
        password = os.environ.get("DEMO_PASSWORD", "careteam-demo")
        with transaction.atomic():
            ensure_reference_data()
            users = self._users(password)
            services = self._catalog()
            self._catalog_review(services, users)
            self._partner(password, services)
            created = 0
            for spec in PATIENTS:
                if not Patient.objects.filter(mrn=spec["patient"]["mrn"]).exists():
                    self._patient(spec, users, services)
                    created += 1
            self._caseloads(users)
            self._huddle(users)
            if apps.is_installed("portal"):
                self._portal(password)
        if apps.is_installed("transitions"):
            # the care-transitions demo (a recent discharge) lives with its app
            call_command("seed_transitions_demo", stdout=self.stdout)
        self.stdout.write(self.style.SUCCESS(f"Demo data ready ({created} patients added)."))
        if apps.is_installed("visits"):
            # by name: the visits app sits above this one and brings its own demo data
            call_command("seed_demo_visits", stdout=self.stdout)
        self.stdout.write(f"Demo logins (password '{password}'):")
        for username, first, last, title, codes in DEMO_USERS:
            self.stdout.write(f"  {username:<13} {first} {last}, {title} ({', '.join(codes)})")
        self.stdout.write("  admin         catalog and user administration (sees no clinical data)")
        self.stdout.write(
            "  partner       Rosa Partida, staff of Riverside Area Agency on Aging (answers its referrals)"
        )
        if apps.is_installed("portal"):
            self.stdout.write("  patient       Maria Alvarez's own portal account (/portal/, in Spanish)")
            self.stdout.write(
                "  caregiver     Lucia Alvarez, her daughter (consent in force: view and message)"
            )
            self.stdout.write("  formercaregiver  a family friend whose consent was revoked: sees nothing")

    # -- users ---------------------------------------------------------------
    def _users(self, password: str) -> dict[str, User]:
        disciplines = {d.code: d for d in Discipline.objects.all()}
        users = {}
        for username, first, last, title, codes in DEMO_USERS:
            user, created = User.objects.get_or_create(
                username=username,
                defaults=dict(first_name=first, last_name=last, title=title, email=f"{username}@example.org"),
            )
            if created:
                user.set_password(password)
                user.save()
                user.disciplines.set([disciplines[c] for c in codes])
            users[username] = user
        group, _ = Group.objects.get_or_create(name=CATALOG_ADMINS)
        group.permissions.add(
            Permission.objects.get(codename="manage_catalog", content_type__app_label="careteam"),
            Permission.objects.get(codename="view_audit_log", content_type__app_label="careteam"),
        )
        admin, created = User.objects.get_or_create(
            username="admin",
            defaults=dict(
                first_name="Ada",
                last_name="Admin",
                is_staff=True,
                is_superuser=True,
                email="admin@example.org",
            ),
        )
        if created:
            admin.set_password(password)
            admin.save()
        admin.groups.add(group)
        users["admin"] = admin
        return users

    # -- the patient portal: the patient, her daughter, a former caregiver ----
    def _portal(self, password: str) -> None:
        """Portal logins on the first demo patient (idempotent): `patient` (her own
        account), `caregiver` (her daughter, a consent in force naming her) and
        `formercaregiver` (a friend whose consent was revoked: sees nothing); one
        activity that is hers to do."""
        from careplans.models import Activity
        from careteam.models import AccountKind

        patient = Patient.objects.filter(mrn=PATIENTS[0]["patient"]["mrn"]).first()
        if patient is None:
            return
        today = timezone.localdate()

        def account(username: str, kind: str, first: str, last: str) -> User:
            user, created = User.objects.get_or_create(
                username=username,
                defaults=dict(kind=kind, first_name=first, last_name=last, email=f"{username}@example.org"),
            )
            if created:
                user.set_password(password)
                user.save()
            return user

        own = account("patient", AccountKind.PATIENT, patient.given_name, patient.family_name)
        if patient.account_id is None:
            Patient.objects.filter(pk=patient.pk).update(account=own)
        daughter = patient.caregivers.order_by("-is_primary", "id").first()
        if daughter is not None and daughter.account_id is None:
            daughter.account = account("caregiver", AccountKind.CAREGIVER, "Lucia", "Alvarez")
            daughter.save(update_fields=["account"])
            Consent.objects.create(
                patient=patient,
                scope="caregiver",
                caregiver=daughter,
                caregiver_access="message",
                date_given=today - timedelta(days=20),
                given_by=patient.full_name,
                method="verbal",
                note="Maria wants Lucia to follow her plan and write to the team.",
            )
        friend, created = Caregiver.objects.get_or_create(
            patient=patient, name="Rosa Delgado", defaults=dict(relationship="friend", phone="555-0109")
        )
        if created:
            friend.account = account("formercaregiver", AccountKind.CAREGIVER, "Rosa", "Delgado")
            friend.save(update_fields=["account"])
            Consent.objects.create(
                patient=patient,
                scope="caregiver",
                caregiver=friend,
                caregiver_access="view",
                date_given=today - timedelta(days=90),
                given_by=patient.full_name,
                status="inactive",
                revoked_at=timezone.now() - timedelta(days=10),
                revoke_reason="Maria asked to end Rosa's access.",
                note="Revoked when Rosa moved away.",
            )
        plan = CarePlan.objects.filter(patient=patient, status="active").first()
        if plan is not None and not Activity.objects.filter(care_plan=plan, for_patient=True).exists():
            first = Activity.objects.filter(care_plan=plan).order_by("id").first()
            if first is not None:
                Activity.objects.create(
                    care_plan=plan,
                    title="Book the eye examination at the clinic",
                    description="Call the clinic and choose a morning appointment.",
                    owner_discipline=first.owner_discipline,
                    for_patient=True,
                    due_date=today + timedelta(days=7),
                )
        self._portal_questions(patient)

    def _portal_questions(self, patient: Patient) -> None:
        """A questionnaire the case manager asked Maria to answer in the portal (the
        Hunger Vital Sign), and a consent recorded as awaiting her confirmation."""
        from careplans.models import Questionnaire, QuestionnaireAssignment
        from careplans.screening import ensure_shipped_questionnaires

        manager = User.objects.filter(username="casemanager").first()
        if manager is None:
            return
        ensure_shipped_questionnaires()
        hvs = Questionnaire.objects.filter(name="HUNGER_VITAL_SIGN", status="active").order_by("-id").first()
        if hvs is not None and not QuestionnaireAssignment.objects.filter(patient=patient).exists():
            QuestionnaireAssignment.objects.create(
                patient=patient,
                care_plan=CarePlan.objects.filter(patient=patient, status="active").first(),
                questionnaire=hvs,
                sensitivity=hvs.sensitivity,
                assigned_by=manager,
            )
        if not Consent.objects.filter(patient=patient, scope="research").exists():
            Consent.objects.create(
                patient=patient,
                scope="research",
                status="proposed",
                date_given=timezone.localdate(),
                given_by=patient.full_name,
                recorded_by=manager,
                method="verbal",
                note="Asked at the home visit; Maria wanted to read it at home before agreeing.",
            )

    # -- caseloads: acuity, programmes, a supervisor and one cover period -----
    def _caseloads(self, users: dict[str, User]) -> None:
        from careteam import caseloads
        from careteam.models import Cover
        from patients.models import Programme, ProgrammeEnrolment

        group, _ = Group.objects.get_or_create(name=CASELOAD_SUPERVISORS)
        group.permissions.add(
            Permission.objects.get(codename="supervise_caseloads", content_type__app_label="careteam")
        )
        users["supervisor"].groups.add(group)
        today = timezone.localdate()
        programmes = list(Programme.objects.filter(active=True).order_by("pk"))
        mrns = [spec["patient"]["mrn"] for spec in PATIENTS]
        for i, patient in enumerate(Patient.objects.filter(mrn__in=mrns).order_by("pk")):
            if not patient.acuity:
                Patient.objects.filter(pk=patient.pk).update(acuity=DEMO_ACUITY[i % len(DEMO_ACUITY)])
            if programmes and not ProgrammeEnrolment.objects.filter(patient=patient).exists():
                ProgrammeEnrolment.objects.create(
                    patient=patient,
                    programme=programmes[i % len(programmes)],
                    entered_on=today - timedelta(days=40 - i),
                    entry_reason="Two admissions in six months; agreed with the patient.",
                    entered_by=users["casemanager"],
                )
        if not Cover.objects.filter(absent=users["nurse"]).exists():
            caseloads.cover_create(
                by=users["nurse"],
                absent=users["nurse"],
                colleague=users["homehealth"],
                discipline=Discipline.objects.get(code="nursing"),
                start_date=today + timedelta(days=7),
                end_date=today + timedelta(days=11),
                note="Annual leave",
            )

    # -- catalog -------------------------------------------------------------
    def _catalog(self) -> dict[str, Service]:
        terms = {}
        for code, name, synonyms in TAXONOMY:
            terms[code], _ = TaxonomyTerm.objects.update_or_create(
                code=code, defaults={"name": name, "synonyms": synonyms}
            )
        services = {}
        today = timezone.localdate()
        for number, (org_name, org_description, offers) in enumerate(CATALOG):
            domain = slugify(org_name).replace("-", "")[:30] + ".example.org"
            org, _ = Organization.objects.get_or_create(
                name=org_name, defaults={"description": org_description}
            )
            if not org.email:  # real-looking contacts (a demo seeded before had none)
                Organization.objects.filter(pk=org.pk).update(
                    email=f"info@{domain}",
                    phone=f"(951) 555-{100 + number * 10:04d}",
                    website=f"https://{domain}",
                )
            for name, cats, description, languages, free, area, days in offers:
                service, created = Service.objects.get_or_create(
                    organization=org,
                    name=name,
                    defaults=dict(
                        description=description,
                        languages=languages,
                        is_free=free,
                        service_area=area,
                        expected_response_days=days,
                        last_verified=today - timedelta(days=30),
                        fees_description="Free" if free else "Sliding scale or insurance",
                        eligibility_description="Residents of the service area.",
                    ),
                )
                if created:
                    service.categories.set([terms[c] for c in cats])
                if not service.email:
                    Service.objects.filter(pk=service.pk).update(
                        email=f"intake.{slugify(name)[:20]}@{domain}",
                        phone=f"(951) 555-{101 + number * 10 + len(services) % 9:04d}",
                        hours_description="Mon–Fri 9:00–17:00",
                    )
                    service.refresh_from_db()
                services[name] = service
        return services

    def _partner(self, password: str, services: dict[str, Service]) -> None:
        """The partner login: staff of the organisation behind Senior Ride Connect, whose
        demo referrals are open; it answers them at /partner/ (created before the
        referrals are sent, so the service answers them itself)."""
        organization = services["Senior Ride Connect"].organization
        user, created = User.objects.get_or_create(
            username="partner",
            defaults=dict(
                first_name="Rosa",
                last_name="Partida",
                email="partner@example.org",
                kind=AccountKind.PARTNER,
                phone="(951) 555-0109",
            ),
        )
        if created:
            user.set_password(password)
            user.save()
        PartnerStaff.objects.get_or_create(user=user, defaults={"organization": organization})

    def _catalog_review(self, services: dict[str, Service], users: dict[str, User]) -> None:
        """Capacity on a few services (one full, one with a waitlist), one listing left
        unassured (stale) and one proposed change waiting for the catalog admin."""
        now = timezone.now()
        # the demo's own categories as one HSDS taxonomy (/hsds/taxonomies)
        taxonomy, _ = Taxonomy.objects.update_or_create(
            pk=uuid.uuid5(uuid.NAMESPACE_URL, "careteam:taxonomy"),
            defaults={"name": "careteam", "description": "CareTeam's need and service categories."},
        )
        TaxonomyTerm.objects.filter(taxonomy="careteam", taxonomy_id_ref__isnull=True).update(
            taxonomy_id_ref=taxonomy.pk
        )
        for name, status, note in CAPACITY:
            service = services.get(name)
            if service is not None and not service.capacity_status:
                Service.objects.filter(pk=service.pk).update(
                    capacity_status=status, capacity_note=note, capacity_updated_at=now - timedelta(days=2)
                )
        stale = services.get("Friendly Caller")
        if stale is not None:
            Service.objects.filter(pk=stale.pk).update(
                last_verified=timezone.localdate() - timedelta(days=500)
            )
        shelter = services.get("Emergency Shelter Referral Line")
        if shelter is not None and not ListingChange.objects.filter(service=shelter).exists():
            referral_services.listing_change_propose(
                by=users["socialworker"],
                service=shelter,
                changes={"hours_description": "Every day, 24 hours", "capacity_status": "waitlist"},
                note="Their line says beds are on a waitlist tonight.",
            )

    # -- patients ------------------------------------------------------------
    def _patient(self, spec: dict, users: dict[str, User], services: dict[str, Service]) -> None:
        today = timezone.localdate()
        now = timezone.now()
        fields = dict(spec["patient"])
        fields["birth_date"] = dt.date.fromisoformat(fields["birth_date"])
        patient = Patient.objects.create(**fields)
        for cg in spec["caregivers"]:
            Caregiver.objects.create(patient=patient, **cg)
        disciplines = {d.code: d for d in Discipline.objects.all()}
        sensitivity = {s.code: s for s in SensitivityCategory.objects.all()}
        for username, code, role in spec["team"]:
            team_services.membership_add(
                patient=patient,
                user=users[username],
                discipline=disciplines[code],
                role=role,
                start_date=today - timedelta(days=60),
            )
        owner_name = next(u for u, _, r in spec["team"] if r in ("case-manager", "lead"))
        owner = users[owner_name]
        Consent.objects.create(
            patient=patient, scope="treatment", recorded_by=owner, date_given=today - timedelta(days=60)
        )
        Consent.objects.create(
            patient=patient,
            scope="information-sharing",
            recorded_by=owner,
            date_given=today - timedelta(days=60),
        )
        if spec["consent_referral"]:
            Consent.objects.create(
                patient=patient,
                scope="referral",
                recorded_by=owner,
                date_given=today - timedelta(days=30),
                note="Verbal consent, witnessed",
            )
        access = patient_access(owner, patient)
        plan_spec = spec["plan"]
        plan = plan_services.careplan_create(
            access=access,
            by=owner,
            title=plan_spec["title"],
            status="active",
            period_start=today - timedelta(days=45),
            review_due=today + timedelta(days=plan_spec["review_due_days"]),
            description="Shared plan agreed with the patient and family.",
        )
        goals = []
        for g in spec["goals"]:
            g = dict(g)
            due = g.pop("target_due_days", None)
            owner_code = g.pop("owner", None)
            goals.append(
                plan_services.goal_create(
                    access=access,
                    plan=plan,
                    by=owner,
                    target_due=today + timedelta(days=due) if due else None,
                    owner_discipline=disciplines.get(owner_code),
                    **g,
                )
            )
        needs = []
        for n in spec["needs"]:
            n = dict(n)
            linked = [goals[i] for i in n.pop("goals", [])]
            sens = n.pop("sensitivity", None)
            needs.append(
                plan_services.need_create(
                    access=access,
                    plan=plan,
                    by=owner,
                    goals=linked,
                    sensitivity=sensitivity.get(sens) if sens else None,
                    **n,
                )
            )
        for a in spec["activities"]:
            a = dict(a)
            sens = a.pop("sensitivity", None)
            # a new activity starts open; one done already gets there by the status machine
            done = a["status"] not in ACTIVITY_INITIAL_STATUSES
            activity = plan_services.activity_create(
                access=access,
                plan=plan,
                by=owner,
                title=a["title"],
                owner_discipline=disciplines[a["owner"]],
                assigned_to=users[a["assignee"]],
                status="in-progress" if done else a["status"],
                due_date=today + timedelta(days=a["due_days"]),
                goals=[goals[i] for i in a.get("goals", [])],
                needs=[needs[i] for i in a.get("needs", [])],
                sensitivity=sensitivity.get(sens) if sens else None,
            )
            if done:
                plan_services.item_update(
                    access=access,
                    item=activity,
                    by=owner,
                    changes={"status": a["status"]},
                    expected_version=activity.version,
                )
        for h in spec["handoffs"]:
            handoff = team_services.handoff_create(
                by=users[h["frm"]],
                access=patient_access(users[h["frm"]], patient),
                care_plan=plan,
                kind=h.get("kind", "patient"),
                to_user=users.get(h.get("to_user", "")),
                to_discipline=disciplines.get(h.get("to_discipline", "")),
                due_at=now + timedelta(hours=h["due_hours"]),
                priority="urgent" if h["due_hours"] < 12 else "routine",
                situation=h["situation"],
                background=h["background"],
                assessment=h["assessment"],
                recommendation=h["recommendation"],
            )
            Handoff.objects.filter(pk=handoff.pk).update(created_at=now - timedelta(hours=h["hours_ago"]))
        for c in spec.get("conversations", []):
            kind, index = c["about"] or (None, None)
            about = {"need": needs, "goal": goals}[kind][index] if kind else None
            conversation = conversation_services.conversation_start(
                access=patient_access(users[c["by"]], patient),
                by=users[c["by"]],
                subject=c["subject"],
                about=about,
            )
            for author, text in c["messages"]:
                conversation_services.message_post(
                    access=patient_access(users[author], patient),
                    by=users[author],
                    conversation=conversation,
                    text=text,
                )
        for r in spec["referrals"]:
            need = needs[r["need"]]
            referral = referral_services.referral_create(
                access=access,
                by=owner,
                plan=plan,
                service=services[r["service"]],
                reason=r["reason"],
                need=need,
                send=r["status"] != "draft",
            )
            steps = {
                "requested": [],
                "accepted": ["accepted"],
                "in-progress": ["accepted", "in-progress"],
                "completed": ["accepted", "in-progress", "completed"],
                "rejected": ["rejected"],
                "draft": [],
            }
            for status in steps[r["status"]]:
                referral_services.referral_set_status(
                    access=access,
                    referral=referral,
                    by=owner,
                    status=status,
                    outcome=r.get("outcome", "") if status in ("completed", "rejected") else "",
                    note="Recorded on the service's behalf after a phone call.",
                )
            if r["sent_days_ago"] is not None:
                sent = now - timedelta(days=r["sent_days_ago"])
                self._backdate(referral.pk, sent)

    def _huddle(self, users: dict[str, User]) -> None:
        """One open huddle on the first demo patient, started by the case manager, with
        the nurse's update in (the others are still to answer)."""
        first: dict = PATIENTS[0]
        patient = Patient.objects.filter(mrn=first["patient"]["mrn"]).first()
        if patient is None or Huddle.objects.filter(patient=patient).exists():
            return
        cm, nurse = users["casemanager"], users["nurse"]
        huddle = huddle_services.huddle_start(
            access=patient_access(cm, patient),
            by=cm,
            deadline=timezone.now() + timedelta(hours=20),
        )
        huddle_services.huddle_answer(
            access=patient_access(nurse, patient),
            by=nurse,
            huddle=huddle,
            answer={
                "news": "Fasting glucose 7.9 this week, down from 9.4; feet checked, no sores.",
                "concerns": "Misses the evening dose when his daughter works late.",
                "will_do": "Phone on Thursday evening to go over the pill organiser.",
                "needs_from": "@pharmacist: can the evening dose move to the morning?",
            },
        )

    def _backdate(self, referral_id: int, sent: dt.datetime) -> None:
        """Spread the demo referral's timeline over past days so metrics look real."""
        referral = Referral.objects.get(pk=referral_id)
        events = list(ReferralEvent.objects.filter(referral=referral).order_by("id"))
        step = timedelta(days=1)
        for i, event in enumerate(events):
            ReferralEvent.objects.filter(pk=event.pk).update(at=sent + step * max(i - 1, 0))
        updates = {"sent_at": sent, "created_at": sent}
        if referral.responded_at:
            updates["responded_at"] = sent + step
        if referral.accepted_at:
            updates["accepted_at"] = sent + step
        if referral.closed_at:
            updates["closed_at"] = sent + step * max(len(events) - 2, 1)
        Referral.objects.filter(pk=referral_id).update(**updates)


__all__ = ["Command", "CarePlan"]
