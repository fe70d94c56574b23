"""The clinician's calendar feed as iCalendar (RFC 5545, written by the `icalendar`
library): each visit is its kind, its times and a link back behind the sign-in. No
patient name, address or clinical text is ever put in it: calendar apps sync to phones
and third-party servers."""

from __future__ import annotations

import datetime as dt
from urllib.parse import urlsplit

from django.utils import timezone
from icalendar import Calendar, Event

from .models import VisitStatus, VisitType

_STATUS = {
    VisitStatus.BOOKED: "CONFIRMED",
    VisitStatus.ARRIVED: "CONFIRMED",
    VisitStatus.FULFILLED: "CONFIRMED",
    VisitStatus.NOSHOW: "CANCELLED",
    VisitStatus.CANCELLED: "CANCELLED",
}


def calendar(rows, *, site: str) -> bytes:
    """rows: (id, start, end, visit type, status) as `selectors.feed_visits` gives them."""
    cal = Calendar()
    cal.add("prodid", "-//CareTeam//Visits//EN")
    cal.add("version", "2.0")
    cal.add("x-wr-calname", "CareTeam visits")
    host = urlsplit(site).hostname or "careteam"
    stamp = timezone.now().astimezone(dt.UTC)
    types = dict(VisitType.choices)
    for visit_id, start, end, visit_type, status in rows:
        event = Event()
        event.add("uid", f"visit-{visit_id}@{host}")
        event.add("dtstamp", stamp)
        event.add("dtstart", start.astimezone(dt.UTC))
        event.add("dtend", end.astimezone(dt.UTC))
        label = types.get(visit_type, "Visit")
        if status in (VisitStatus.CANCELLED, VisitStatus.NOSHOW):
            label = f"{label} (cancelled)" if status == VisitStatus.CANCELLED else f"{label} (missed)"
        event.add("summary", label)
        event.add("url", f"{site}/visits/{visit_id}/")
        event.add("status", _STATUS.get(status, "CONFIRMED"))
        cal.add_component(event)
    return cal.to_ical()
