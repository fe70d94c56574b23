# SQL here is composed only from module constants and column names; values are bound.
# ruff: noqa: S608
"""Who receives work for user X at time T: the one rule of cover.

While X is away (a `Cover` in force on T's date, start and end inclusive) the colleague
named by X receives what would have gone to X: handoffs addressed to X (inbox, accept,
reminders), activities assigned to X (My work, overdue reminders), escalations and plan
reviews as X's case manager, and mentions of X. Otherwise X receives their own work. The
colleague is on X's patients' teams for those dates through time-limited memberships
(careteam.caseloads), so the usual permission checks let them see what they receive.

Three forms of the same rule, for the three kinds of caller:
- `receiver_for(user_id, on)` / `receivers_for(ids, on)`: Python (one query);
- `work_for_q(field, user, on)`: a Q for querysets ("assigned to me or to someone I cover");
- `receiver_sql(column)`: SQL for the reminder sweep's set-based INSERT.
Cover does not chain: a colleague who is away themselves cannot be named (the service
refuses it), so one hop is the whole rule.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable

from django.db.models import Q, QuerySet
from django.utils import timezone

from .models import Cover, CoverStatus


def _day(on: dt.date | dt.datetime | None) -> dt.date:
    if on is None:
        return timezone.localdate()
    if isinstance(on, dt.datetime):
        return timezone.localdate(on)
    return on


def receivers_for(user_ids: Iterable[int], on: dt.date | dt.datetime | None = None) -> dict[int, int]:
    """{user id: the id of whoever receives their work on that day} (one query)."""
    ids = {int(i) for i in user_ids if i is not None}
    routed = {i: i for i in ids}
    if not ids:
        return routed
    covers = (
        Cover.objects.in_force(_day(on))
        .filter(absent_id__in=ids)
        .order_by("absent_id", "id")
        .values_list("absent_id", "colleague_id")
    )
    for absent_id, colleague_id in covers:
        routed[absent_id] = colleague_id  # the oldest cover wins if two ever overlap
        routed.setdefault(colleague_id, colleague_id)
    return routed


def receiver_for(user_id: int, on: dt.date | dt.datetime | None = None) -> int:
    return receivers_for([user_id], on)[int(user_id)]


def covered_by(user, on: dt.date | dt.datetime | None = None) -> QuerySet:
    """Ids of the users whose work goes to `user` on that day (a subquery)."""
    return Cover.objects.in_force(_day(on)).filter(colleague_id=user.pk).values("absent_id")


def work_for_q(field: str, user, on: dt.date | dt.datetime | None = None) -> Q:
    """Rows whose `field` (a user id column) names `user` or someone `user` covers now."""
    return Q(**{field: user.pk}) | Q(**{f"{field}__in": covered_by(user, on)})


def receiver_sql(column: str) -> str:
    """SQL: who receives the work of the user in `column` on %(today)s (the sweep's
    parameter). The same rule as `receivers_for`, oldest cover first."""
    # composed from a column name given by the module that calls it; values are bound
    return f"""COALESCE((
            SELECT c.colleague_id FROM careteam_cover c
            WHERE c.absent_id = {column} AND c.status = '{CoverStatus.ACTIVE.value}'
              AND c.start_date <= %(today)s AND c.end_date >= %(today)s
            ORDER BY c.id LIMIT 1
        ), {column})"""
