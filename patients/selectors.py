"""Reads of the patients app: possible duplicates before enrolment. Every query starts
from the permission-restricted querysets in `careteam.permissions`."""

from __future__ import annotations

from dataclasses import dataclass, field

from django.db.models import BooleanField, Case, Q, Value, When

from .models import Patient, normalise_mrn

# ---------------------------------------------------------------------------
# Possible duplicates before enrolment
# ---------------------------------------------------------------------------
NAME_SIMILARITY = 0.45


@dataclass
class DuplicateCheck:
    visible: list = field(default_factory=list)
    hidden_mrn: bool = False

    @property
    def mrn_taken(self) -> bool:
        return self.hidden_mrn or any(getattr(p, "mrn_match", False) for p in self.visible)

    def __bool__(self) -> bool:
        return bool(self.visible) or self.hidden_mrn


def possible_duplicates(user, *, mrn: str, given_name: str, family_name: str, birth_date) -> DuplicateCheck:
    """Records that may be this patient: the same MRN (exact, normalised), or the same
    birth date and a similar name (trigram similarity of the upper-cased full name).
    Only records the user may see are returned; a hidden record with the same MRN is
    reported as a bare fact, and hidden name matches are not reported at all."""
    from django.contrib.postgres.search import TrigramSimilarity
    from django.db.models.functions import Concat, Upper

    from careteam.permissions import patients_for

    check = DuplicateCheck()
    mrn = normalise_mrn(mrn)
    full = f"{given_name} {family_name}".strip().upper()
    q = Q(birth_date=birth_date) if birth_date else Q(pk__in=[])
    mrn_q = Q(mrn__iexact=mrn) if mrn else Q(pk__in=[])
    found = list(
        patients_for(user)
        .filter(mrn_q | q)
        .annotate(
            similarity=TrigramSimilarity(Concat(Upper("given_name"), Value(" "), Upper("family_name")), full),
            mrn_match=Case(When(mrn_q, then=Value(True)), default=Value(False), output_field=BooleanField()),
        )
        .filter(Q(mrn_match=True) | Q(similarity__gte=NAME_SIMILARITY))
        .order_by("-mrn_match", "-similarity", "id")[:10]
    )
    check.visible = found
    if mrn and not any(p.mrn_match for p in found):
        check.hidden_mrn = Patient.objects.filter(mrn__iexact=mrn).exists()
    return check
