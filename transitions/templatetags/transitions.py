"""Hooks other pages include: the chart's transitions card and the worklist's
readmission flag. Everything is read through the access layer."""

from django import template

from transitions import selectors

register = template.Library()


@register.inclusion_tag("transitions/_chart.html")
def transitions_card(access):
    """The chart's card: readmission flag, the last transitions and their debriefs."""
    return {
        "access": access,
        "patient": access.patient,
        "transitions": list(selectors.transitions_for(access)[:3]),
        "readmission": selectors.recent_readmission(access),
    }


@register.simple_tag
def readmitted_ids(user):
    """Ids of the user's team patients readmitted within 30 days (one query)."""
    return set(selectors.readmitted_patients(user))
