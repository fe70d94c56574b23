"""Reads of visits and authorisations, always from the permission-restricted queryset:
a visit of a patient the reader may not see is in no calendar, feed, list or count."""

from __future__ import annotations

import datetime as dt
from collections import defaultdict
from dataclasses import dataclass, field

from django.db.models import (
    Avg,
    Count,
    DurationField,
    Exists,
    ExpressionWrapper,
    F,
    OuterRef,
    Prefetch,
    Q,
    QuerySet,
    Subquery,
)
from django.db.models.functions import TruncMonth, TruncWeek
from django.utils import timezone

from careplans.models import Activity
from careteam.models import TeamMembership, TeamRole
from careteam.permissions import PatientAccess, restrict, team_member_q, visible_related
from referrals.models import Referral

from .models import VISIT_OPEN_STATUSES, Authorisation, Visit, VisitQuerySet, VisitStatus, VisitType

# home visits closer than this leave no time to travel between them
TRAVEL_MINUTES = 15


def visits_for(user) -> VisitQuerySet:
    """Every visit `user` may read (team members of the patient, emergency access)."""
    return restrict(Visit.objects.all(), user, patient_path="patient")


def authorisations_for(user) -> QuerySet:
    return restrict(Authorisation.objects.all(), user, patient_path="patient")


def with_visible_activities(qs: QuerySet, user) -> QuerySet:
    """Linked activities come filtered by the permissions module (a sensitive activity
    the reader may not see is not shown with the visit)."""
    return qs.prefetch_related(
        Prefetch("activities", queryset=visible_related(user, Activity).only("id", "title", "care_plan_id"))
    )


def week_bounds(day: dt.date) -> tuple[dt.date, dt.datetime, dt.datetime]:
    """The Monday of `day`'s week and the week as aware datetimes in the site's zone."""
    monday = day - dt.timedelta(days=day.weekday())
    tz = timezone.get_current_timezone()
    start = dt.datetime.combine(monday, dt.time.min, tzinfo=tz)
    return monday, start, start + dt.timedelta(days=7)


@dataclass
class CalendarDay:
    day: dt.date
    visits: list = field(default_factory=list)
    # home visits of the day in the order they are driven to (by start time), with the
    # gap to the one before: less than TRAVEL_MINUTES is flagged
    route: list = field(default_factory=list)


@dataclass
class Calendar:
    monday: dt.date
    days: list[CalendarDay]
    conflicts: set[int]

    @property
    def count(self) -> int:
        return sum(len(d.visits) for d in self.days)

    @property
    def previous(self) -> dt.date:
        return self.monday - dt.timedelta(days=7)

    @property
    def next(self) -> dt.date:
        return self.monday + dt.timedelta(days=7)


def _calendar(qs: QuerySet, monday: dt.date) -> Calendar:
    """Group a week's visits by day; mark overlapping open visits of one clinician as
    conflicts and order each day's home visits for travel. One query for the visits, one
    for their linked activities, whatever the number of rows."""
    rows = list(qs.select_related("patient", "clinician", "discipline").order_by("start", "id"))
    days = [CalendarDay(monday + dt.timedelta(days=n)) for n in range(7)]
    by_day = {d.day: d for d in days}
    conflicts: set[int] = set()
    open_by_person: dict[int, list[Visit]] = defaultdict(list)
    for visit in rows:
        local = timezone.localtime(visit.start).date()
        if local in by_day:
            by_day[local].visits.append(visit)
        if visit.status in VISIT_OPEN_STATUSES and visit.clinician_id:
            open_by_person[visit.clinician_id].append(visit)
    for visits in open_by_person.values():
        latest: Visit | None = None  # the visit ending last so far
        for visit in visits:  # sorted by start
            if latest is not None and visit.start < latest.end:
                conflicts.update({visit.pk, latest.pk})
            if latest is None or visit.end > latest.end:
                latest = visit
    for day in days:
        previous: dict[int | None, Visit] = {}
        for visit in day.visits:
            if visit.visit_type != VisitType.HOME or visit.status not in VISIT_OPEN_STATUSES:
                continue
            before = previous.get(visit.clinician_id)
            gap = None if before is None else int((visit.start - before.end).total_seconds() // 60)
            day.route.append((visit, gap, gap is not None and gap < TRAVEL_MINUTES))
            previous[visit.clinician_id] = visit
    return Calendar(monday, days, conflicts)


def my_week(user, day: dt.date) -> Calendar:
    """The clinician's own visits in the week of `day`, across their patients (only
    patients whose team they are on now)."""
    monday, start, end = week_bounds(day)
    qs = (
        Visit.objects.filter(clinician_id=user.pk)
        .filter(team_member_q(user, "patient_id"))
        .in_window(start, end)
    )
    return _calendar(with_visible_activities(qs, user), monday)


def team_week(user, day: dt.date) -> Calendar:
    """Every visit, by anyone, of the patients the user is case manager of, in the week
    of `day`."""
    monday, start, end = week_bounds(day)
    managed = TeamMembership.objects.current().filter(
        user_id=user.pk, role=TeamRole.CASE_MANAGER, patient_id=OuterRef("patient_id")
    )
    qs = visits_for(user).filter(Exists(managed)).in_window(start, end)
    return _calendar(with_visible_activities(qs, user), monday)


def feed_visits(
    user, *, now: dt.datetime | None = None
) -> list[tuple[int, dt.datetime, dt.datetime, str, str]]:
    """What a clinician's calendar feed carries: their visits from 30 days back to 180
    ahead on patients whose team they are on now, as (id, start, end, type, status)
    only, never a name."""
    now = now or timezone.now()
    return list(
        Visit.objects.filter(clinician_id=user.pk)
        .filter(team_member_q(user, "patient_id"))
        .in_window(now - dt.timedelta(days=30), now + dt.timedelta(days=180))
        .order_by("start", "id")
        .values_list("id", "start", "end", "visit_type", "status")
    )


def feed_patient_ids(user, visit_ids: list[int]) -> list[int]:
    return list(Visit.objects.filter(pk__in=visit_ids).values_list("patient_id", flat=True).distinct())


def patient_visits(access: PatientAccess) -> QuerySet:
    qs = Visit.objects.filter(patient=access.patient).select_related(
        "clinician", "discipline", "authorisation"
    )
    return with_visible_activities(qs, access.user).order_by("-start", "-id")


def patient_authorisations(access: PatientAccess) -> QuerySet:
    return (
        Authorisation.objects.filter(patient=access.patient)
        .select_related("discipline")
        .prefetch_related("documents")
        .order_by("-start_date", "-id")
    )


# ---------------------------------------------------------------------------
# Scheduling accuracy
# ---------------------------------------------------------------------------
PERIODS = {"week": TruncWeek, "month": TruncMonth}


def scheduling_accuracy(user, *, since: dt.date, period: str = "month") -> dict:
    """Booked vs kept vs missed visits per period, discipline and visit type, and the time
    from a referral or an activity to its first visit, over the visits of the patients
    the user may see, aggregated in SQL (one query per table).

    Booked counts every visit whose time fell in the period and was not cancelled (a
    rebooked visit counts once, as its new booking); kept are the completed, missed the
    no-shows; accuracy = kept / (kept + missed)."""
    trunc = PERIODS.get(period, TruncMonth)
    start = dt.datetime.combine(since, dt.time.min, tzinfo=timezone.get_current_timezone())
    visits = visits_for(user).filter(start__gte=start, start__lt=timezone.now())
    rows = list(
        visits.annotate(period=trunc("start"))
        .values("period", "discipline__name", "visit_type")
        .annotate(
            booked=Count("id", filter=~Q(status=VisitStatus.CANCELLED)),
            kept=Count("id", filter=Q(status=VisitStatus.FULFILLED)),
            missed=Count("id", filter=Q(status=VisitStatus.NOSHOW)),
            cancelled=Count("id", filter=Q(status=VisitStatus.CANCELLED)),
        )
        .order_by("-period", "discipline__name", "visit_type")
    )
    types = dict(VisitType.choices)
    for row in rows:
        row["visit_type_label"] = types.get(row["visit_type"], row["visit_type"])
        decided = row["kept"] + row["missed"]
        row["accuracy"] = round(100 * row["kept"] / decided) if decided else None
    totals = {k: sum(r[k] for r in rows) for k in ("booked", "kept", "missed", "cancelled")}
    decided = totals["kept"] + totals["missed"]
    totals["accuracy"] = round(100 * totals["kept"] / decided) if decided else None

    def first_visit(link: str):
        return Subquery(
            Visit.objects.filter(**{link: OuterRef("pk")})
            .exclude(status=VisitStatus.CANCELLED)
            .order_by("start")
            .values("start")[:1]
        )

    def average_days(qs: QuerySet, link: str) -> dict:
        wait = ExpressionWrapper(F("first") - F("created_at"), output_field=DurationField())
        result = (
            qs.filter(created_at__gte=start)
            .annotate(first=first_visit(link))
            .filter(first__isnull=False)
            .aggregate(n=Count("id"), avg=Avg(wait))
        )
        avg = result["avg"]
        return {"n": result["n"], "days": round(avg.total_seconds() / 86400, 1) if avg is not None else None}

    activities = restrict(Activity.objects.all(), user, patient_path="care_plan__patient")
    referrals = restrict(Referral.objects.all(), user, patient_path="patient")
    return {
        "rows": rows,
        "totals": totals,
        "activity_wait": average_days(activities, "activities"),
        "referral_wait": average_days(referrals, "referral"),
        "since": since,
        "period": period if period in PERIODS else "month",
    }
