"""Reads of visits and authorisations, always from the permission-restricted queryset:
a visit of a patient the reader may not see is in no calendar, feed, list or count."""

from __future__ import annotations

import datetime as dt
from collections import defaultdict
from collections.abc import Callable
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
from django.db.models.functions import TruncDate, TruncMonth, TruncWeek
from django.urls import reverse
from django.utils import timezone

from careplans.models import Activity, CarePlan
from careplans.selectors import Change, HistoryWindow
from careteam import keyset
from careteam.models import TeamMembership, TeamRole, User
from careteam.permissions import PatientAccess, history_rows, restrict, team_member_q, visible_related
from careteam.prepared import PreparedQuery
from referrals.models import Referral

from .models import (
    VISIT_MAX_MINUTES,
    VISIT_OPEN_STATUSES,
    Authorisation,
    RuleFiring,
    Visit,
    VisitQuerySet,
    VisitStatus,
    VisitType,
)

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


def _calendar(
    qs: QuerySet, monday: dt.date, *, activity_titles: Callable[[], dict[int, list[str]]]
) -> Calendar:
    """Group a week's visits by day; mark overlapping open visits of one clinician as
    conflicts and order each day's home visits for travel. One query for the visits, one
    for their linked activities (`activity_titles()` per visit id, asked only when there
    are visits), whatever the number of rows. Each visit gets the strings its row shows
    (`_row_strings`)."""
    rows = list(qs.select_related("patient", "clinician", "discipline").order_by("start", "id"))
    titles = activity_titles() if rows else {}
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
    _row_strings(rows, conflicts, titles)
    return Calendar(monday, days, conflicts)


def _row_strings(rows: list[Visit], conflicts: set[int], titles: dict[int, list[str]]) -> None:
    """What a calendar row shows, made here once per visit rather than by a filter, a
    tag or a choices lookup per row in the template: the same text they render."""
    type_labels = {k: str(v) for k, v in Visit._meta.get_field("visit_type").flatchoices}
    status_labels = {k: str(v) for k, v in Visit._meta.get_field("status").flatchoices}
    for visit in rows:
        vars(visit).update(
            start_label=timezone.localtime(visit.start).strftime("%H:%M"),  # |time:"H:i"
            end_label=timezone.localtime(visit.end).strftime("%H:%M"),
            conflict=visit.pk in conflicts,
            detail_url=reverse("visits:visit_detail", kwargs={"visit_id": visit.pk}),
            chart_url=reverse("patient_chart", kwargs={"patient_id": visit.patient_id}),
            type_label=type_labels.get(visit.visit_type, visit.visit_type),
            status_label=status_labels.get(visit.status, visit.status),
            activity_titles="; ".join(titles.get(visit.pk, ())),
        )


def _my_week_visits(user, start: dt.datetime, end: dt.datetime) -> QuerySet:
    return (
        Visit.objects.filter(clinician_id=user.pk)
        .filter(team_member_q(user, "patient_id"))
        .in_window(start, end)
    )


# The activities My week shows with each visit: the permissions module's rule for
# activities (visible_related) took longer to build and compile than to run; its SQL is
# built once per process. Titles in the activities' own order (careplans Activity.Meta).
MY_WEEK_ACTIVITIES = PreparedQuery(
    lambda user, start, end: (
        Visit.activities.through.objects.filter(
            visit__in=_my_week_visits(user, start, end).values("pk"),
            activity__in=visible_related(user, Activity).values("pk"),
        )
        .order_by("activity__care_plan_id", "activity__due_date", "activity_id")
        .values_list("visit_id", "activity__title")
    ),
    datetimes=("start", "end"),
)


def my_week(user, day: dt.date) -> Calendar:
    """The clinician's own visits in the week of `day`, across their patients (only
    patients whose team they are on now)."""
    monday, start, end = week_bounds(day)

    def activity_titles() -> dict[int, list[str]]:
        titles: dict[int, list[str]] = defaultdict(list)
        for row in MY_WEEK_ACTIVITIES.fetch(getattr(user, "_wrapped", user), start=start, end=end):
            titles[row.visit_id].append(row.activity__title)
        return titles

    return _calendar(_my_week_visits(user, start, end), monday, activity_titles=activity_titles)


# the team's week shows one day at a time, this many visits a page (keyset by start, id)
TEAM_DAY_PAGE = 50
# at most this many clinicians in the team week's filter
TEAM_CLINICIANS_LIMIT = 100


def team_visits(user) -> QuerySet:
    """Every visit, by anyone, of the patients the user is case manager of now."""
    managed = TeamMembership.objects.current().filter(
        user_id=user.pk, role=TeamRole.CASE_MANAGER, patient_id=OuterRef("patient_id")
    )
    return visits_for(user).filter(Exists(managed))


@dataclass
class TeamDay:
    """One day of the team's week: the week's count per day, the clinicians visiting
    that week (the filter), and one keyset page of the day's visits by start time."""

    monday: dt.date
    day: dt.date
    counts: list[tuple[dt.date, int]]
    clinicians: list
    clinician_id: int | None
    page: keyset.Page
    conflicts: set[int]
    route: list

    @property
    def visits(self) -> list:
        return self.page.rows

    @property
    def count(self) -> int:
        return sum(n for _day, n in self.counts)

    @property
    def day_count(self) -> int:
        return dict(self.counts).get(self.day, 0)

    @property
    def previous(self) -> dt.date:
        return self.monday - dt.timedelta(days=7)

    @property
    def next(self) -> dt.date:
        return self.monday + dt.timedelta(days=7)


def team_day_salt(day: dt.date, clinician_id: int | None) -> str:
    """A cursor belongs to one day and filter: another's answers 400."""
    return f"visits.team_week:{day.isoformat()}:{clinician_id or ''}"


def team_day(
    user,
    day: dt.date,
    *,
    clinician_id: int | None = None,
    cursor: str | None = None,
    query=None,
    size: int = TEAM_DAY_PAGE,
) -> TeamDay:
    """The team's visits of `day` (optionally one clinician's), a page at a time, with
    the week's count per day. A fixed number of queries whatever the number of visits
    (counts, clinicians, the page, its linked activities); raises keyset.BadCursor for a
    cursor this day and filter did not make. A visit is marked a conflict when it
    overlaps another open visit of the same clinician on the team's patients."""
    tz = timezone.get_current_timezone()
    monday, start, end = week_bounds(day)
    visits = team_visits(user)
    week = visits.filter(start__gte=start, start__lt=end)
    counts = dict(
        week.annotate(local_day=TruncDate("start", tzinfo=tz))
        .values("local_day")
        .annotate(n=Count("id"))
        .values_list("local_day", "n")
        .order_by()
    )
    clinicians = list(
        User.objects.filter(pk__in=week.exclude(clinician_id=None).values("clinician_id"))
        .only("id", "username", "first_name", "last_name")
        .order_by("last_name", "first_name", "id")[:TEAM_CLINICIANS_LIMIT]
    )
    day_start = dt.datetime.combine(day, dt.time.min, tzinfo=tz)
    rows = visits.filter(start__gte=day_start, start__lt=day_start + dt.timedelta(days=1))
    if clinician_id is not None:
        rows = rows.filter(clinician_id=clinician_id)
    overlapping = visits.filter(
        clinician_id=OuterRef("clinician_id"),
        status__in=VISIT_OPEN_STATUSES,
        # no visit lasts longer (constraint visit_duration_bounded): the clinician's index
        # is read over that window, not over every earlier visit
        start__gt=OuterRef("start") - dt.timedelta(minutes=VISIT_MAX_MINUTES),
        start__lt=OuterRef("end"),
        end__gt=OuterRef("start"),
    ).exclude(pk=OuterRef("pk"))
    rows = with_visible_activities(
        rows.select_related("patient", "clinician", "discipline").annotate(overlaps=Exists(overlapping)),
        user,
    )
    salt = team_day_salt(day, clinician_id)
    boundary = keyset.decode(cursor, salt=salt, length=2)
    fields = ("start", "id")
    if boundary is None:
        qs = rows.order_by(*fields)
    elif boundary.backwards:
        qs = rows.filter(keyset.after_q(fields, boundary.key)).order_by("-start", "-id")
    else:
        qs = rows.filter(keyset.after_q(fields, boundary.key, descending=False)).order_by(*fields)
    page = keyset.page_of(
        list(qs[: size + 1]),
        boundary,
        size=size,
        key_of=lambda v: (v.start, v.pk),
        salt=salt,
        query=query,
    )
    conflicts = {v.pk for v in page.rows if v.overlaps and v.status in VISIT_OPEN_STATUSES and v.clinician_id}
    route: list[tuple[Visit, int | None, bool]] = []
    previous: dict[int | None, Visit] = {}
    for visit in page.rows:  # home visits in travel order, per clinician
        if visit.visit_type != VisitType.HOME or visit.status not in VISIT_OPEN_STATUSES:
            continue
        before = previous.get(visit.clinician_id)
        gap = None if before is None else int((visit.start - before.end).total_seconds() // 60)
        route.append((visit, gap, gap is not None and gap < TRAVEL_MINUTES))
        previous[visit.clinician_id] = visit
    return TeamDay(
        monday=monday,
        day=day,
        counts=[
            (monday + dt.timedelta(days=n), counts.get(monday + dt.timedelta(days=n), 0)) for n in range(7)
        ],
        clinicians=clinicians,
        clinician_id=clinician_id,
        page=page,
        conflicts=conflicts,
        route=route,
    )


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


# ---------------------------------------------------------------------------
# Rule firings on the plan history
# ---------------------------------------------------------------------------
def plan_firings(access: PatientAccess, plan: CarePlan) -> QuerySet:
    """The hand-on rules fired on `plan` that the reader may see, newest first. A firing
    is left out, not shown blank, when the reader may not see what it created (the
    activity: the history's own rule, every version of an item ever in a hidden
    category) or what fired it (a referral made from a need in a hidden category): a
    neutral line would still say that something hidden happened. A firing whose
    activity has since been deleted is left out too, as nothing says what it was."""
    if not access.can_view or plan.patient_id != access.patient.pk:
        return RuleFiring.objects.none()
    visible_activities = history_rows(access, Activity).filter(care_plan_id=plan.pk).values("id")
    hidden_referrals = (
        Referral.objects.filter(patient_id=plan.patient_id)
        .exclude(access.sensitivity_q("need__sensitivity"))
        .values("pk")
    )
    return (
        RuleFiring.objects.filter(care_plan_id=plan.pk, patient_id=plan.patient_id)
        .filter(Q(activity_id__isnull=True) | Q(activity_id__in=visible_activities))
        .exclude(activity_id__isnull=True, outcome__startswith="activity ")
        .exclude(object_type=Referral._meta.label_lower, object_id__in=hidden_referrals)
        .select_related("rule", "fired_by", "activity")
        .order_by("-fired_at", "-id")
    )


def firing_event_label(firing: RuleFiring) -> str:
    """What fired the rule, e.g. "authorisation #12 approved" (no query, no patient text)."""
    noun, _, verb = firing.event.partition(".")
    return f"{noun} #{firing.object_id} {verb}"


def firing_history_entries(access: PatientAccess, plan: CarePlan, window: HistoryWindow) -> list:
    """The plan history's entries for rule firings (registered by `VisitsConfig.ready`):
    one query for a page, whatever the number of firings."""
    entries = []
    for firing in window.slice(plan_firings(access, plan), "fired_at"):
        fields = [("Event", "—", firing_event_label(firing))]
        link = ""
        if firing.activity is not None:
            fields.append(("Activity", "—", firing.activity.title))
            link = reverse("careplans:activity_detail", kwargs={"activity_id": firing.activity_id})
        change = Change(
            at=firing.fired_at,
            kind="rule",
            item_id=firing.pk,
            label=firing.rule.name,
            by=firing.fired_by.display_name if firing.fired_by else "system",
            type="fired",
            fields=fields,
            reason=firing.outcome,
            link=link,
        )
        entries.append((firing.fired_at, firing.pk, change))
    return entries
