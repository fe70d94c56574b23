"""Demo visits and authorisations (called by seed_demo; idempotent): this week's visits
of the demo physiotherapist, nurse and home-health nurse on their patients, an approved
physiotherapy authorisation, and the two example hand-on rules."""

from __future__ import annotations

import datetime as dt

from django.core.management.base import BaseCommand
from django.db import transaction
from django.utils import timezone

from careteam.models import Discipline, TeamMembership, TeamRole
from careteam.permissions import patient_access
from visits import services
from visits.models import Authorisation, HandOnRule, Visit

CLINICIANS = {"physio": ("home", 45), "nurse": ("home", 30), "homehealth": ("home", 60)}
ADDRESSES = ["14 Alder Road", "3 Quarry Lane", "88 Station Street", "5 Mill Court", "21 Orchard Way"]


class Command(BaseCommand):
    help = "Load demo visits, a physiotherapy authorisation and the example hand-on rules (idempotent)."

    def handle(self, *args, **options) -> None:
        with transaction.atomic():
            rules = self._rules()
            visits, authorisations = self._visits()
        self.stdout.write(
            self.style.SUCCESS(
                f"Demo visits ready ({visits} visits, {authorisations} authorisations, {rules} rules added)."
            )
        )

    def _rules(self) -> int:
        pt = Discipline.objects.get(code="physical-therapy")
        made = 0
        for name, fields in (
            (
                "Physiotherapy authorised: schedule the visits",
                dict(event="authorisation.approved", condition_discipline=pt, activity_title="Schedule PT visits",
                     owner_discipline=pt, due_in_days=2),
            ),
            (
                "Referral accepted: confirm the first appointment",
                dict(event="referral.accepted", activity_title="Confirm first appointment", assignee="referrer",
                     due_in_days=2),
            ),
        ):  # fmt: skip
            _, created = HandOnRule.objects.get_or_create(name=name, defaults=fields)
            made += created
        return made

    def _visits(self) -> tuple[int, int]:
        today = timezone.localdate()
        monday = today - dt.timedelta(days=today.weekday())
        tz = timezone.get_current_timezone()
        made_visits = made_auths = 0
        memberships = (
            TeamMembership.objects.current()
            .filter(user__username__in=CLINICIANS)
            .select_related("user", "patient", "discipline")
            .order_by("patient_id", "id")
        )
        slot: dict[str, int] = {}
        for m in memberships:
            if Visit.objects.filter(patient=m.patient, clinician=m.user).exists():
                continue
            manager = (
                TeamMembership.objects.current()
                .filter(patient=m.patient, role__in=(TeamRole.CASE_MANAGER, TeamRole.LEAD))
                .select_related("user")
                .order_by("role")
                .first()
            )
            if manager is None:
                continue
            access = patient_access(manager.user, m.patient)
            auth = None
            if m.discipline.code == "physical-therapy":
                auth = Authorisation.objects.filter(patient=m.patient, discipline=m.discipline).first()
                if auth is None:
                    auth = services.authorisation_create(
                        access=access, by=manager.user, payer="Northwind Health Plan",
                        service="Physiotherapy at home", discipline=m.discipline, units_authorised=8,
                        start_date=monday - dt.timedelta(days=7), end_date=monday + dt.timedelta(days=49),
                        reference_number="NW-PT-20417", status="approved",
                        care_plan=services.careplan_for(m.patient.pk),
                    )  # fmt: skip
                    made_auths += 1
            visit_type, minutes = CLINICIANS[m.user.username]
            # yesterday, today and tomorrow, kept inside this week
            week_end = monday + dt.timedelta(days=6)
            one = dt.timedelta(days=1)
            for day in sorted({max(monday, today - one), today, min(week_end, today + one)}):
                n = slot.get(m.user.username, 0)
                slot[m.user.username] = n + 1
                start = dt.datetime.combine(day, dt.time(8 + (n % 5) * 2), tzinfo=tz)
                visit = services.visit_book(
                    access=access, by=manager.user, start=start, clinician=m.user, visit_type=visit_type,
                    duration_minutes=minutes, time_zone=str(tz), location=ADDRESSES[n % len(ADDRESSES)],
                    authorisation=auth, care_plan=services.careplan_for(m.patient.pk), allow_conflicts=True,
                ).visit  # fmt: skip
                made_visits += 1
                if visit.end < timezone.now():
                    services.visit_set_status(
                        access=access,
                        visit=visit,
                        by=m.user,
                        status="fulfilled",
                        expected_version=visit.version,
                    )
        return made_visits, made_auths
