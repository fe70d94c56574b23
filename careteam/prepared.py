"""Querysets whose SQL is built once per process and run with each request's values.

Building a permission-restricted queryset (nested EXISTS over memberships, grants and
sensitivity categories) costs Django far more CPU than PostgreSQL spends running it: My
work's restricted lists took ~50 ms of query building and compiling per page for ~5 ms
of SQL at 100,000 patients. A `PreparedQuery` builds its queryset once with stand-in
values for the request's own (the user's id, the time, dates), keeps the SQL, and runs
it with the real values: the same SQL the queryset would have produced, without
rebuilding it.

The stand-ins are checked, not trusted: the queryset is built twice with two different
sets of stand-ins, with no database access allowed while building. The SQL must come
out identical and every parameter must be either the same constant in both builds or
the stand-in of one named value. Anything else (a value derived from a stand-in, a
query run while building, a clock read other than `django.utils.timezone.now`, a result
that is not a values() list) raises `PreparedQueryError` on first use instead of
answering wrongly. A builder must not branch in Python on the user or the values: the
rules in careteam.permissions build the same SQL for every active user.

    ACTIVITIES = PreparedQuery(lambda user, until: restrict(...).values_list(...),
                               dates=("until",))
    for row in ACTIVITIES.fetch(user, until=until): row.title ...

The builder receives a stand-in user (only `pk` and the active flags are real on it)
and the named values; `timezone.now()` and `timezone.localdate()` inside it answer the
stand-in of the request's time, which `fetch` replaces by the time it is given.
"""

from __future__ import annotations

import datetime as dt
import threading
from collections import namedtuple
from collections.abc import Callable, Iterable
from contextlib import contextmanager
from typing import Any

from django.db import connection
from django.db.models import QuerySet
from django.utils import timezone

PREPARED: list[PreparedQuery] = []  # every one made, for the test that each equals its queryset


class PreparedQueryError(RuntimeError):
    """The builder's SQL depends on more than the values it names."""


class _StandInUser:
    """What a permission rule may ask of the user while its SQL is built."""

    is_authenticated = True
    is_active = True
    is_anonymous = False

    def __init__(self, pk: int):
        self.pk = self.id = pk


def _no_queries(execute, sql, params, many, context):
    raise PreparedQueryError(f"a prepared query ran SQL while being built: {sql[:200]}")


# While a builder runs, `timezone.now()` answers the stand-in time in the building thread
# only: other threads of a threaded server read the real clock meanwhile. The wrapper is
# installed once and stays (a thread-local read per call); restoring the real function
# after each build would race with a build in another thread.
_building = threading.local()
_install_lock = threading.Lock()


def _now_or_stand_in() -> dt.datetime:
    stand_in = getattr(_building, "now", None)
    return stand_in if stand_in is not None else _real_now()


_real_now = timezone.now


@contextmanager
def _clock(now: dt.datetime):
    with _install_lock:
        if timezone.now is not _now_or_stand_in:
            timezone.now = _now_or_stand_in  # type: ignore[assignment]
    _building.now = now
    try:
        yield
    finally:
        _building.now = None


class PreparedQuery:
    def __init__(
        self,
        build: Callable[..., QuerySet],
        *,
        ints: Iterable[str] = (),
        dates: Iterable[str] = (),
        datetimes: Iterable[str] = (),
    ):
        self.build = build
        self.ints, self.dates, self.datetimes = tuple(ints), tuple(dates), tuple(datetimes)
        self._lock = threading.Lock()
        self._prepared: tuple[str, list[Any], type] | None = None
        self._sliced = False
        PREPARED.append(self)

    def __repr__(self) -> str:
        return f"PreparedQuery({getattr(self.build, '__qualname__', self.build)!r})"

    def queryset(self, user, **values: Any) -> QuerySet:
        """The queryset the builder makes for the real user now: what `fetch` must equal."""
        return self.build(user, **values)

    # -- building -------------------------------------------------------------------
    def _stand_ins(self, n: int) -> dict[str, Any]:
        """Values no real request has: negative ids, days in 1901 and 1902."""
        base = dt.datetime(1900 + n, n, n, n, n, n, 1000 * n + 7, tzinfo=dt.UTC)
        values: dict[str, Any] = {
            "user": -1_000_000_000 * n - 7,
            "now": base,
            "today": timezone.localdate(base),
        }
        for i, name in enumerate(self.ints):
            values[name] = -1_000_000_000 * n - 101 - i
        for i, name in enumerate(self.dates):
            values[name] = dt.date(1920 + n, n, 10 + i)
        for i, name in enumerate(self.datetimes):
            values[name] = dt.datetime(1940 + n, n, 10 + i, n, n, n, tzinfo=dt.UTC)
        return values

    def _compile(self, values: dict[str, Any]) -> tuple[str, list[Any], list[str]]:
        named = {k: v for k, v in values.items() if k not in ("user", "now", "today")}
        with _clock(values["now"]), connection.execute_wrapper(_no_queries):
            qs = self.build(_StandInUser(values["user"]), **named)
            query = qs.query
            sql, params = query.get_compiler(qs.db).as_sql()
        names = [*query.extra_select, *query.values_select, *query.annotation_select]
        if not query.values_select:
            raise PreparedQueryError("a prepared query must end in values()/values_list()")
        self._sliced = query.is_sliced
        return sql, list(params), names

    def _prepare(self) -> tuple[str, list[Any], type]:
        a, b = self._stand_ins(1), self._stand_ins(2)
        sql_a, params_a, names = self._compile(a)
        sql_b, params_b, _ = self._compile(b)
        if sql_a != sql_b or len(params_a) != len(params_b):
            raise PreparedQueryError("the SQL changes with the values: it cannot be prepared")
        by_stand_in = {_key(v): k for k, v in a.items()}
        slots: list[Any] = []
        for pa, pb in zip(params_a, params_b, strict=True):
            name = by_stand_in.get(_key(pa))
            if name is not None and _key(b[name]) == _key(pb):
                slots.append(_Slot(name))
            elif _key(pa) == _key(pb) and _key(pa) not in {_key(v) for v in b.values()}:
                slots.append(pa)
            else:
                raise PreparedQueryError(f"a parameter depends on the values in a way not named: {pa!r}")
        for stand_in in (*a.values(), *b.values()):
            if str(stand_in) in sql_a:
                raise PreparedQueryError("a stand-in value was written into the SQL text")
        return sql_a, slots, namedtuple("Row", names, rename=True)  # type: ignore[misc]

    # -- running --------------------------------------------------------------------
    def _statement(
        self, user, now: dt.datetime | None, values: dict[str, Any]
    ) -> tuple[str, list[Any], type]:
        if self._prepared is None:
            with self._lock:
                if self._prepared is None:
                    self._prepared = self._prepare()
        sql, slots, row = self._prepared
        now = now or timezone.now()
        given = {"user": user.pk, "now": now, "today": timezone.localdate(now), **values}
        return sql, [given[s.name] if isinstance(s, _Slot) else s for s in slots], row

    def fetch(
        self,
        user,
        *,
        now: dt.datetime | None = None,
        limit: int | None = None,
        offset: int = 0,
        **values: Any,
    ) -> list[Any]:
        """Rows of the query for this user at `now` (default: the current time); with
        `limit` and `offset`, one page of them in the builder's order (bound parameters,
        so the SQL stays the same for every page)."""
        if not _active(user):
            return []  # what every permission rule answers for them
        sql, params, row = self._statement(user, now, values)
        if limit is not None or offset:
            if self._sliced:
                raise PreparedQueryError("a sliced prepared query cannot be paged again")
            sql, params = f"{sql} LIMIT %s OFFSET %s", [*params, limit, int(offset)]
        with connection.cursor() as cursor:
            cursor.execute(sql, params)
            return [row(*r) for r in cursor.fetchall()]

    def count(self, user, *, now: dt.datetime | None = None, **values: Any) -> int:
        """The number of rows `fetch` would return."""
        if not _active(user):
            return 0
        sql, params, _row = self._statement(user, now, values)
        with connection.cursor() as cursor:
            # the SQL is what Django compiled for the builder; only the values are bound
            cursor.execute(f"SELECT COUNT(*) FROM ({sql}) AS counted", params)  # noqa: S608
            return cursor.fetchone()[0]


def _active(user) -> bool:
    return bool(getattr(user, "is_authenticated", False) and getattr(user, "is_active", False))


class _Slot:
    __slots__ = ("name",)

    def __init__(self, name: str):
        self.name = name


def _key(value: Any) -> tuple[str, str]:
    """Compare parameters by type and value (1 == True, a date is not a datetime)."""
    return (type(value).__name__, repr(value))
