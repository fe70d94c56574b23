"""FHIR R4 endpoints (/fhir/): reads, searches driven by the search table
(careteam/api/fhir_search.py), Patient/$everything, the CapabilityStatement written from
that table, and the import of CarePlan Bundles. Same permission checks and audit as the
rest of CareTeam; every error, unknown URLs included, answers as an OperationOutcome."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable

from django.conf import settings
from django.core.exceptions import PermissionDenied
from django.db.models import Exists, F, IntegerField, OuterRef, Prefetch, Q, Value
from django.db.models.functions import Coalesce
from django.http import Http404, HttpResponsePermanentRedirect, JsonResponse
from django.urls import Resolver404, resolve
from django.utils import timezone
from django.utils.http import urlencode
from django.views.decorators.csrf import csrf_exempt
from drf_spectacular.utils import extend_schema
from rest_framework import permissions
from rest_framework.authentication import SessionAuthentication
from rest_framework.exceptions import APIException, MethodNotAllowed, NotAcceptable, NotFound
from rest_framework.renderers import JSONRenderer
from rest_framework.response import Response
from rest_framework.views import APIView

from careplans import screening
from careplans.models import Activity, CarePlan, CarePlanStatus, Goal, GoalLifecycle
from careteam.audit import audit, audit_denied, audit_list
from careteam.models import AuditAction, Handoff, HandoffStatus, TeamMembership
from careteam.permissions import (
    PatientAccess,
    access_item,
    access_patient_by_id,
    patient_access,
    patient_visible_q,
    patients_for,
    restrict,
    visible_related,
)
from portal import selectors as portal_selectors
from portal.access import access_portal_patient, is_portal_user
from referrals.models import Referral
from referrals.selectors import referral_for_user
from transitions import fhir as transitions_fhir
from visits import fhir as visit_fhir

from . import fhir
from . import fhir_search as fs
from .auth import ApiTokenAuthentication
from .errors import api_exception_handler
from .fhir_conversations import communications_for
from .parsers import SafeJSONParser

CODES = {
    400: "invalid",
    401: "login",
    403: "forbidden",
    404: "not-found",
    405: "not-supported",
    406: "not-supported",
    409: "conflict",
    412: "conflict",
    413: "too-costly",
    415: "not-supported",
    429: "throttled",
}

# Searches that do not page yet return at most this many resources (kept for callers
# outside the search table).
MAX_SEARCH = 50
JSON_FORMATS = ("json", "application/json", "application/fhir+json", "application/json+fhir")


class FHIRRenderer(JSONRenderer):
    media_type = fhir.FHIR_JSON
    format = "fhir"


class FHIRParser(SafeJSONParser):
    media_type = fhir.FHIR_JSON


def fhir_exception_handler(exc, context):
    issues = getattr(exc, "fhir_issues", None)
    response = api_exception_handler(exc, context)
    if response is None:
        return None
    if issues:
        response.data = {"resourceType": "OperationOutcome", "issue": issues}
        return response
    data = response.data
    if isinstance(data, dict) and set(data) - {"detail", "current_version"}:
        message = "; ".join(
            f"{field}: {' '.join(map(str, v)) if isinstance(v, list) else v}" for field, v in data.items()
        )
    else:
        message = str(data.get("detail", "")) if isinstance(data, dict) else str(data)
    response.data = fhir.operation_outcome(CODES.get(response.status_code, "processing"), message)
    return response


def prefers_strict(request) -> bool:
    """`Prefer: handling=strict`: refuse what cannot be honoured instead of ignoring it."""
    prefer = request.headers.get("Prefer", "")
    return any(part.strip().lower() == "handling=strict" for part in prefer.split(","))


@extend_schema(exclude=True)
class FHIRView(APIView):
    renderer_classes = [FHIRRenderer, JSONRenderer]
    parser_classes = [FHIRParser, SafeJSONParser]
    authentication_classes = [ApiTokenAuthentication, SessionAuthentication]
    search_kind: str | None = None  # the search table entry GET answers, for search views

    def get_exception_handler(self):
        return fhir_exception_handler

    def initial(self, request, *args, **kwargs):
        fmt = request.query_params.get("_format")
        if fmt is not None and fmt.strip().lower() not in JSON_FORMATS:
            raise NotAcceptable(f"_format={fmt}: this server answers JSON only (_format=json).")
        super().initial(request, *args, **kwargs)

    def get(self, request, *args, **kwargs):
        if self.search_kind is None:
            raise MethodNotAllowed(request.method)
        return self.search(fs.REGISTRY[self.search_kind])

    def url(self, path: str) -> str:
        return self.request.build_absolute_uri(f"/fhir/{path}")

    def respond(self, data: dict, status: int = 200) -> Response:
        response = Response(data, status=status, content_type=fhir.FHIR_JSON)
        version = data.get("meta", {}).get("versionId") if isinstance(data, dict) else None
        if version:
            response["ETag"] = f'W/"{version}"'
        return response

    def page_window(self) -> tuple[int, int]:
        """(offset, count) from `_offset` and `_count`: count defaults to and is capped at
        FHIR_SEARCH_MAX_COUNT; anything that is not a small non-negative number is a 400."""
        limit = settings.FHIR_SEARCH_MAX_COUNT
        params = self.request.query_params

        def number(name: str, default: int) -> int:
            raw = params.get(name)
            if raw is None or raw == "":
                return default
            if not raw.isdigit() or len(raw) > 9:
                raise fhir_bad_request(f"{name} must be a whole number from 0.")
            return int(raw)

        return number("_offset", 0), min(number("_count", limit), limit)

    # -- search ------------------------------------------------------------------
    def search(self, search: fs.SearchType) -> Response:
        """Run one search of the table: filter, count, one page in a fixed number of
        queries, `_include`s (visible-only), `link` self/next/previous, audit."""
        request = self.request
        strict = prefers_strict(request)
        parts = search.parts or [("", search)]
        parsed_parts = [
            (prefix, part, fs.parse(part, request.query_params, strict=strict)) for prefix, part in parts
        ]
        parsed = parsed_parts[0][2]
        offset, count = self.page_window()
        querysets = [
            (prefix, part, part.queryset(request.user).filter(p.q)) for prefix, part, p in parsed_parts
        ]
        total = sum(qs.count() for _, _, qs in querysets)
        rows: list = []
        if not parsed.summary_count and count:
            rows = self._page(querysets, parsed, offset, count)
        entries = self._render(parts, rows)
        if parsed.elements:
            entries = [(url, fs.subset(resource, parsed.elements)) for url, resource in entries]
        included = []
        seen = {url for url, _ in entries}
        for name in parsed.includes:
            for url, resource in search.includes[name](self, [row for _, row in rows]):
                if url not in seen:
                    seen.add(url)
                    included.append((url, resource))
        self._audit_search(search, parsed, [row for _, row in rows], total, offset)
        data = fhir.bundle(entries)
        if included:
            data.setdefault("entry", []).extend(
                {"fullUrl": url, "resource": resource, "search": {"mode": "include"}}
                for url, resource in included
            )
        data["total"] = total
        data["link"] = self.page_links(search.kind, parsed, offset, count, total)
        return self.respond(data)

    def _page(self, querysets, parsed: fs.Parsed, offset: int, count: int) -> list[tuple[str, object]]:
        """One page of (part prefix, row). A search over several tables (Task) pages over
        the UNION of (sort key, table, id), then loads each table's rows by id."""
        if len(querysets) == 1:
            prefix, part, qs = querysets[0]
            ordered = qs.order_by(*parsed.order, *part.default_order)
            return [(prefix, row) for row in ordered[offset : offset + count]]
        key = parsed.order[0] if parsed.order else querysets[0][1].default_order[0]
        descending, column = key.startswith("-"), key.lstrip("-")
        selects = [
            qs.order_by()
            .annotate(sort_key=F(column), part_no=Value(i, output_field=IntegerField()))
            .values_list("sort_key", "part_no", "pk")
            for i, (_, _, qs) in enumerate(querysets)
        ]
        union = selects[0].union(*selects[1:], all=True)
        ordered = union.order_by("-sort_key" if descending else "sort_key", "part_no", "pk")
        keys = list(ordered[offset : offset + count])
        loaded = {}
        for i, (_, _part, qs) in enumerate(querysets):
            ids = [pk for _, n, pk in keys if n == i]
            if ids:
                loaded.update({(i, row.pk): row for row in qs.filter(pk__in=ids)})
        return [(querysets[n][0], loaded[(n, pk)]) for _, n, pk in keys if (n, pk) in loaded]

    def _render(self, parts, rows: list[tuple[str, object]]) -> list[tuple[str, dict]]:
        by_part: dict[str, list] = defaultdict(list)
        for prefix, row in rows:
            by_part[prefix].append(row)
        rendered: dict[tuple[str, int], tuple[str, dict]] = {}
        for prefix, part in parts:
            if by_part[prefix]:
                for row, entry in zip(by_part[prefix], part.render(self, by_part[prefix]), strict=True):
                    rendered[(prefix, row.pk)] = entry
        return [rendered[(prefix, row.pk)] for prefix, row in rows]

    def _audit_search(self, search: fs.SearchType, parsed: fs.Parsed, rows, total: int, offset: int) -> None:
        request = self.request
        if search.patient_path is None:
            return
        named = list(dict.fromkeys(parsed.patient_ids))
        visible = set()
        if named:
            visible = set(patients_for(request.user).filter(pk__in=named).values_list("pk", flat=True))
        shown = sorted({_patient_id(row, search.patient_path) for row in rows})
        if not named or visible:
            audit_list(
                request,
                list_name=f"fhir.{search.kind}",
                patient_id=next(iter(visible)) if len(visible) == 1 else None,
                patient_ids=shown,
                query=request.query_params.dict(),
                detail=f"FHIR search, {total} results, {len(rows)} shown from {offset}",
            )
        for hidden in [pk for pk in named if pk not in visible][:5]:
            audit_denied(
                request,
                url_kwargs={"patient_id": hidden},
                detail=f"FHIR {search.kind} search for a patient not visible",
            )

    def page_links(self, kind: str, parsed: fs.Parsed, offset: int, count: int, total: int) -> list[dict]:
        """self/next/previous: the parameters the search honoured (ignored ones are left
        out, as the specification asks), the page size and the offset."""

        def link(relation: str, at: int) -> dict:
            query = urlencode([*parsed.accepted, ("_count", count), ("_offset", at)])
            return {"relation": relation, "url": f"{self.url(kind)}?{query}"}

        links = [link("self", offset)]
        if parsed.summary_count:
            return links
        if count and offset + count < total:
            links.append(link("next", offset + count))
        if offset > 0 and count:
            links.append(link("previous", max(0, offset - count)))
        return links

    # -- searches outside the table (transitions' Encounter, MedicationStatement) ------
    def searched_patient(self) -> PatientAccess | None:
        """The patient a search names (?patient=12 or Patient/12); None when not visible,
        so a search for a hidden patient finds nothing rather than answering 404."""
        raw = self.request.query_params.get("patient") or self.request.query_params.get("subject")
        if not raw:
            raise fhir_bad_request("Search by patient: ?patient=<id>.")
        raw = raw.removeprefix("Patient/")
        try:
            return access_patient_by_id(self.request.user, raw)
        except Http404:
            self._hidden_patient = raw
            return None

    def searchset(self, kind: str, access: PatientAccess | None, entries: list[tuple[str, dict]]) -> Response:
        """One page of a search Bundle built from the whole result (for searches not in the
        search table yet), audited like the table's."""
        offset, count = self.page_window()
        total, page = len(entries), entries[offset : offset + count]
        hidden = getattr(self, "_hidden_patient", None)
        if access is None and hidden is not None:
            audit_denied(
                self.request,
                url_kwargs={"patient_id": hidden},
                detail=f"FHIR {kind} search for a patient not visible",
            )
        else:
            audit_list(
                self.request,
                list_name=f"fhir.{kind}",
                patient_id=access.patient.pk if access else None,
                query=self.request.query_params.dict(),
                detail=f"FHIR search, {total} results, {len(page)} shown from {offset}",
            )
        data = fhir.bundle(page)
        data["total"] = total
        accepted = [(k, v) for k, v in self.request.query_params.items() if k not in ("_offset", "_count")]
        parsed = fs.Parsed(Q(), accepted, [], [], [], False, [])
        data["link"] = self.page_links(kind, parsed, offset, count, total)
        return self.respond(data)

    def audit_read(self, obj, patient_id: int, detail: str = "FHIR read") -> None:
        audit(
            user=self.request.user,
            action=AuditAction.VIEW,
            obj=obj,
            patient_id=patient_id,
            request=self.request,
            detail=detail,
        )


def _patient_id(row, path: str) -> int:
    if path == "pk":
        return row.pk
    *through, last = path.split("__")
    for name in through:
        row = getattr(row, name)
    return getattr(row, f"{last}_id")


def fhir_bad_request(message: str):
    from rest_framework.exceptions import ValidationError

    return ValidationError({"detail": message})


# ---------------------------------------------------------------------------
# Loaders shared by reads, searches and $everything (queries constant in rows)
# ---------------------------------------------------------------------------
def plan_resources(user, plans: list[CarePlan]) -> list[dict]:
    """CarePlan resources with the goals and activities `user` may see (any patients)."""
    plan_ids = [p.pk for p in plans]
    goals = defaultdict(list)
    for goal in (
        visible_related(user, Goal)
        .filter(care_plan_id__in=plan_ids)
        .order_by("id")
        .only("id", "care_plan_id")
    ):
        goals[goal.care_plan_id].append(goal)
    activities = defaultdict(list)
    visible = (
        restrict(Activity.objects.filter(care_plan_id__in=plan_ids), user, patient_path="care_plan__patient")
        .select_related("owner_discipline", "assigned_to")
        .prefetch_related(Prefetch("goals", queryset=visible_related(user, Goal).only("id")))
        .order_by("id")
    )
    for activity in visible:
        activities[activity.care_plan_id].append(activity)
    return [fhir.careplan_resource(p, goals[p.pk], activities[p.pk]) for p in plans]


def _plan_resources(access: PatientAccess, plans: list[CarePlan]) -> list[dict]:
    return plan_resources(access.user, plans)


def _plans(patient_id: int) -> list[CarePlan]:
    return list(CarePlan.objects.filter(patient_id=patient_id).select_related("author").order_by("id"))


def _goals(access: PatientAccess) -> list[Goal]:
    return list(
        Goal.objects.filter(care_plan__patient_id=access.patient.pk)
        .filter(access.goal_q())
        .select_related("owner_discipline")
        .order_by("id")
    )


def _referrals(access: PatientAccess) -> list[Referral]:
    """The patient's referrals, less those made from a need the caller may not see."""
    return list(
        Referral.objects.filter(patient_id=access.patient.pk)
        .filter(access.sensitivity_q("need__sensitivity"))
        .select_related("service__organization", "referred_by")
        .order_by("id")
    )


def _handoffs(patient_id: int) -> list[Handoff]:
    return list(
        Handoff.objects.filter(patient_id=patient_id)
        .select_related("from_user", "to_user", "to_discipline")
        .order_by("id")
    )


def _questionnaire_responses(access: PatientAccess) -> list:
    """The patient's screenings the caller may see (sensitive instruments filtered)."""
    return list(screening.screenings_for(access).order_by("id"))


def _team_members():
    """Memberships that have begun and were not entered in error."""
    return TeamMembership.objects.filter(start_date__lte=timezone.localdate()).exclude(
        status__in=["proposed", "entered-in-error"]
    )


def shown_memberships_q(ref: str = "") -> Q:
    """The memberships a CareTeam shows: the current ones, or, for a team with no current
    member, the former ones. `ref` is the path from the row to the membership."""
    p = f"{ref}__" if ref else ""
    current_ids = TeamMembership.objects.current().values("pk")
    team_has_current = Exists(TeamMembership.objects.current().filter(patient_id=OuterRef(f"{p}patient_id")))
    return Q(**{f"{p}pk__in": current_ids}) | (
        Q(**{f"{p}pk__in": _team_members().values("pk")}) & ~Q(team_has_current)
    )


def careteam_resources(patients: list) -> list[dict | None]:
    """The CareTeam of each patient (None for a patient whose team never had a member)."""
    members = defaultdict(list)
    shown = (
        _team_members()
        .filter(patient_id__in=[p.pk for p in patients])
        .filter(shown_memberships_q())
        .select_related("user", "discipline")
        .order_by("id")
    )
    current = set(
        TeamMembership.objects.current()
        .filter(patient_id__in=[p.pk for p in patients])
        .values_list("pk", flat=True)
    )
    for membership in shown:
        members[membership.patient_id].append(membership)
    return [
        fhir.careteam_resource(p, members[p.pk], active=any(m.pk in current for m in members[p.pk]))
        for p in patients
    ]


def _careteam(access: PatientAccess) -> dict:
    team = careteam_resources([access.patient])[0]
    if team is None:
        raise Http404
    return team


def visible_memberships(user):
    """Memberships a caller may see as PractitionerRoles: those the CareTeams of patients
    the caller may see show (never a team of a patient hidden from them)."""
    return (
        _team_members()
        .filter(patient_visible_q(user, "patient_id"))
        .filter(shown_memberships_q())
        .select_related("user", "discipline")
    )


def visible_practitioners(user):
    """Team members of the patients the caller may see (and no one else)."""
    from careteam.models import User

    return User.objects.filter(pk__in=visible_memberships(user).values("user_id")).prefetch_related(
        "disciplines"
    )


# ---------------------------------------------------------------------------
# The search table (fhir_content_views adds Questionnaire, QuestionnaireResponse and
# PlanDefinition)
# ---------------------------------------------------------------------------
HL7_SP = "http://hl7.org/fhir/SearchParameter"
US_CORE_SP = "http://hl7.org/fhir/us/core/SearchParameter"
CAREPLAN_CATEGORY_SYSTEM = "http://hl7.org/fhir/us/core/CodeSystem/careplan-category"


def patient_includes(path: str):
    """`_include=X:patient`: the patients `rows` name (through `path`), those the caller
    may see."""

    def load(view: FHIRView, rows: list) -> list[tuple[str, dict]]:
        ids = {_patient_id(row, path) for row in rows}
        patients = patients_for(view.request.user).filter(pk__in=ids).order_by("id")
        return [(view.url(f"Patient/{p.pk}"), fhir.patient_resource(p)) for p in patients]

    return load


def _subject_params(path: str, *, subject: bool = True) -> list[fs.Param]:
    params = [
        fs.Param("patient", "reference", fs.reference_q(path), "Patient/<id>", f"{HL7_SP}/clinical-patient")
    ]
    if subject:
        params.append(fs.Param("subject", "reference", fs.reference_q(path), "Patient/<id>"))
    return params


def _id_param(prefix: str = "") -> fs.Param:
    return fs.Param("_id", "token", fs.id_q(prefix=prefix), "", f"{HL7_SP}/Resource-id")


def _last_updated(field_name: str = "updated_at") -> fs.Param:
    return fs.Param(
        "_lastUpdated", "date", fs.date_q(f"{field_name}__date"), "", f"{HL7_SP}/Resource-lastUpdated"
    )


# Patient ---------------------------------------------------------------------
def _patient_identifier(value: str, name: str) -> Q:
    token = fs.Token.parse(value)
    if not token.matches_system(fhir.MRN_SYSTEM) or not token.code:
        return Q(pk__in=[])
    return Q(mrn__iexact=token.code)


fs.register(
    fs.SearchType(
        kind="Patient",
        profile=fhir.US_CORE_PATIENT,
        queryset=lambda user: patients_for(user),
        render=lambda view, rows: [(view.url(f"Patient/{p.pk}"), fhir.patient_resource(p)) for p in rows],
        params=[
            _id_param(),
            fs.Param(
                "identifier",
                "token",
                _patient_identifier,
                "The MRN: [system|]value",
                f"{HL7_SP}/Patient-identifier",
            ),
            fs.Param(
                "name",
                "string",
                fs.string_q("given_name", "family_name", "preferred_name"),
                "",
                f"{HL7_SP}/individual-name",
            ),
            fs.Param("family", "string", fs.string_q("family_name"), "", f"{HL7_SP}/individual-family"),
            fs.Param(
                "given",
                "string",
                fs.string_q("given_name", "preferred_name"),
                "",
                f"{HL7_SP}/individual-given",
            ),
            fs.Param("birthdate", "date", fs.date_q("birth_date"), "", f"{HL7_SP}/individual-birthdate"),
            fs.Param(
                "gender",
                "token",
                fs.code_q("gender", allowed=("male", "female", "other", "unknown")),
                "",
                f"{HL7_SP}/individual-gender",
            ),
        ],
        sorts={"birthdate": "birth_date", "_lastUpdated": "updated_at"},
        default_order=("family_name", "given_name", "pk"),
        patient_path="pk",
        requires_one_of=("_id", "identifier", "name", "family", "given", "birthdate", "gender"),
        interactions=("read", "update", "search-type", "create"),
        conditional_create=True,
        operations=(("everything", "http://hl7.org/fhir/OperationDefinition/Patient-everything"),),
    )
)


# CarePlan --------------------------------------------------------------------
def _coding_q(path: str, token: fs.Token) -> Q:
    """A coding in the JSON array of CodeableConcepts (or the one concept) at `path`."""
    coding = {k: v for k, v in (("system", token.system), ("code", token.code)) if v}
    if not coding:
        return Q(pk__in=[])
    if path.endswith("__coding"):
        return Q(**{f"{path}__contains": [coding]})
    return Q(**{f"{path}__contains": [{"coding": [coding]}]})


def _careplan_category(value: str, name: str) -> Q:
    """Every plan is a US Core assess-plan (CareTeam emits it for all); an imported plan
    also has the categories it came with."""
    token = fs.Token.parse(value)
    if token.matches_system(CAREPLAN_CATEGORY_SYSTEM) and token.code in ("assess-plan", ""):
        return Q(pk__isnull=False)
    return _coding_q("fhir__source__category", token)


def _goal_description(value: str, name: str, modifier: str = "") -> Q:
    """Goal.description: a coding of an imported goal, or (`:text`) the words."""
    if modifier == "text":
        return Q(description__icontains=value)
    return _coding_q("fhir__source__description__coding", fs.Token.parse(value))


_goal_description.modifiers = ("text",)  # type: ignore[attr-defined]


def careplan_goal_includes(view: FHIRView, plans: list) -> list[tuple[str, dict]]:
    goals = (
        visible_related(view.request.user, Goal)
        .filter(care_plan_id__in=[p.pk for p in plans])
        .select_related("owner_discipline", "care_plan")
        .order_by("id")
    )
    return [(view.url(f"Goal/{g.pk}"), fhir.goal_resource(g, g.care_plan.patient_id)) for g in goals]


def careplan_careteam_includes(view: FHIRView, plans: list) -> list[tuple[str, dict]]:
    patients = list(
        patients_for(view.request.user).filter(pk__in={p.patient_id for p in plans}).order_by("id")
    )
    return [
        (view.url(f"CareTeam/{p.pk}"), r)
        for p, r in zip(patients, careteam_resources(patients), strict=True)
        if r is not None
    ]


fs.register(
    fs.SearchType(
        kind="CarePlan",
        profile=fhir.US_CORE_CAREPLAN,
        queryset=lambda user: restrict(
            CarePlan.objects.select_related("author"), user, patient_path="patient"
        ),
        render=lambda view, rows: [
            (view.url(f"CarePlan/{p.pk}"), r)
            for p, r in zip(rows, plan_resources(view.request.user, rows), strict=True)
        ],
        params=[
            _id_param(),
            *_subject_params("patient_id"),
            fs.Param("category", "token", _careplan_category, "", f"{HL7_SP}/CarePlan-category"),
            fs.Param(
                "status",
                "token",
                fs.code_q("status", allowed=CarePlanStatus.values),
                "",
                f"{HL7_SP}/CarePlan-status",
            ),
            fs.Param(
                "date",
                "date",
                fs.period_q("period_start", "period_end"),
                "CarePlan.period",
                f"{HL7_SP}/clinical-date",
            ),
            _last_updated(),
        ],
        sorts={"date": "period_start", "_lastUpdated": "updated_at"},
        includes={
            "CarePlan:goal": careplan_goal_includes,
            "CarePlan:patient": patient_includes("patient"),
            "CarePlan:subject": patient_includes("patient"),
            "CarePlan:care-team": careplan_careteam_includes,
        },
        requires_one_of=("patient", "subject", "_id"),
        operations=(
            (
                "import",
                f"{fhir.SYSTEM_BASE}/OperationDefinition/CarePlan-import",
            ),
        ),
    )
)


# CareTeam (one per patient: the rows are patients) ----------------------------
def _careteam_status(value: str, name: str) -> Q:
    code = fs.Token.parse(value).code
    current = Exists(TeamMembership.objects.current().filter(patient_id=OuterRef("pk")))
    return {"active": Q(current), "inactive": ~Q(current)}.get(code, Q(pk__in=[]))


def _careteam_role(value: str, name: str) -> Q:
    token = fs.Token.parse(value)
    current = TeamMembership.objects.current().filter(patient_id=OuterRef("pk"))
    q = Q(pk__in=[])
    if token.matches_system(fhir.DISCIPLINE_SYSTEM):
        q |= Q(Exists(current.filter(discipline__code=token.code) if token.code else current))
    if token.matches_system(fhir.TEAM_ROLE_SYSTEM):
        q |= Q(Exists(current.filter(role=token.code) if token.code else current))
    return q


def careteam_participant_includes(view: FHIRView, patients: list) -> list[tuple[str, dict]]:
    users = visible_practitioners(view.request.user).filter(
        pk__in=visible_memberships(view.request.user)
        .filter(patient_id__in=[p.pk for p in patients])
        .values("user_id")
    )
    return [
        (view.url(f"Practitioner/{u.pk}"), fhir.practitioner_resource(u, u.disciplines.all()))
        for u in users.order_by("id")
    ]


fs.register(
    fs.SearchType(
        kind="CareTeam",
        queryset=lambda user: patients_for(user).filter(
            Exists(_team_members().filter(patient_id=OuterRef("pk")))
        ),
        render=lambda view, rows: [
            (view.url(f"CareTeam/{p.pk}"), r) for p, r in zip(rows, careteam_resources(rows), strict=True)
        ],
        params=[
            _id_param(),
            *_subject_params("pk"),
            fs.Param(
                "status",
                "token",
                _careteam_status,
                "active (current members) or inactive",
                f"{HL7_SP}/CareTeam-status",
            ),
            fs.Param(
                "role",
                "token",
                _careteam_role,
                "A member's discipline or team role",
                f"{US_CORE_SP}/us-core-careteam-role",
            ),
        ],
        includes={
            "CareTeam:patient": patient_includes("pk"),
            "CareTeam:subject": patient_includes("pk"),
            "CareTeam:participant": careteam_participant_includes,
        },
        profile=fhir.US_CORE_CARETEAM,
        patient_path="pk",
        requires_one_of=("patient", "subject", "_id"),
    )
)


# Goal ------------------------------------------------------------------------
fs.register(
    fs.SearchType(
        kind="Goal",
        profile=fhir.US_CORE_GOAL,
        queryset=lambda user: restrict(
            Goal.objects.select_related("owner_discipline", "care_plan"),
            user,
            patient_path="care_plan__patient",
        ),
        render=lambda view, rows: [
            (view.url(f"Goal/{g.pk}"), fhir.goal_resource(g, g.care_plan.patient_id)) for g in rows
        ],
        params=[
            _id_param(),
            *_subject_params("care_plan__patient_id"),
            fs.Param(
                "lifecycle-status",
                "token",
                fs.code_q("lifecycle_status", allowed=GoalLifecycle.values),
                "",
                f"{HL7_SP}/Goal-lifecycle-status",
            ),
            fs.Param(
                "target-date",
                "date",
                fs.date_q("target_due"),
                "Goal.target.dueDate",
                f"{HL7_SP}/Goal-target-date",
            ),
            fs.Param(
                "description",
                "token",
                _goal_description,
                "A coding of the description ([system|]code), or :text",
                f"{US_CORE_SP}/us-core-goal-description",
            ),
            _last_updated(),
        ],
        sorts={"target-date": "target_due", "_lastUpdated": "updated_at"},
        includes={
            "Goal:patient": patient_includes("care_plan__patient"),
            "Goal:subject": patient_includes("care_plan__patient"),
        },
        patient_path="care_plan__patient",
        requires_one_of=("patient", "subject", "_id"),
    )
)


# ServiceRequest --------------------------------------------------------------
SERVICE_REQUEST_STATUSES = (
    "draft",
    "active",
    "on-hold",
    "revoked",
    "completed",
    "entered-in-error",
    "unknown",
)


def _service_request_status(value: str, name: str) -> Q:
    code = fs.Token.parse(value).code
    if code not in SERVICE_REQUEST_STATUSES:
        raise fs.bad_request(
            f"Search parameter {name}: '{code}' is not one of {', '.join(SERVICE_REQUEST_STATUSES)}."
        )
    return Q(status__in=[k for k, v in fhir.SERVICE_REQUEST_STATUS.items() if v == code])


def _service_code(value: str, name: str) -> Q:
    token = fs.Token.parse(value)
    if not token.matches_system(fhir.SERVICE_SYSTEM) or not token.code:
        return Q(pk__in=[])
    import uuid

    try:
        return Q(service_id=uuid.UUID(token.code))
    except ValueError:
        return Q(pk__in=[])


def service_request_basedon_includes(view: FHIRView, rows: list) -> list[tuple[str, dict]]:
    plans = list(
        restrict(
            CarePlan.objects.filter(pk__in={r.care_plan_id for r in rows if r.care_plan_id}).select_related(
                "author"
            ),
            view.request.user,
            patient_path="patient",
        ).order_by("id")
    )
    return [
        (view.url(f"CarePlan/{p.pk}"), r)
        for p, r in zip(plans, plan_resources(view.request.user, plans), strict=True)
    ]


def _referrals_visible(user):
    return restrict(
        Referral.objects.select_related("service__organization", "referred_by"), user, patient_path="patient"
    ).annotate(authored=Coalesce("sent_at", "created_at"))


fs.register(
    fs.SearchType(
        kind="ServiceRequest",
        queryset=_referrals_visible,
        render=lambda view, rows: [
            (view.url(f"ServiceRequest/{r.pk}"), fhir.service_request_resource(r)) for r in rows
        ],
        params=[
            _id_param(),
            *_subject_params("patient_id"),
            fs.Param("status", "token", _service_request_status, "", f"{HL7_SP}/ServiceRequest-status"),
            fs.Param(
                "code", "token", _service_code, "The community service (its id)", f"{HL7_SP}/clinical-code"
            ),
            fs.Param(
                "authored", "date", fs.date_q("authored__date"), "", f"{HL7_SP}/ServiceRequest-authored"
            ),
            _last_updated(),
        ],
        sorts={"authored": "authored", "_lastUpdated": "updated_at"},
        includes={
            "ServiceRequest:patient": patient_includes("patient"),
            "ServiceRequest:subject": patient_includes("patient"),
            "ServiceRequest:based-on": service_request_basedon_includes,
        },
    )
)


# Task: handoffs and the tasks tracking referrals, one search over both -----------
def _task_code(code: str):
    def build(value: str, name: str) -> Q:
        token = fs.Token.parse(value)
        system = fhir.TASK_CODE_SYSTEM if code == "fulfill" else fhir.TASK_KIND_SYSTEM
        return (
            Q(pk__isnull=False) if token.matches_system(system) and token.code in (code, "") else Q(pk__in=[])
        )

    return build


TASK_STATUSES = sorted(set(HandoffStatus.values) | set(fhir.SERVICE_REQUEST_STATUS))


def _task_part(prefix: str, queryset, render, code: str) -> fs.SearchType:
    return fs.SearchType(
        kind="Task",
        queryset=queryset,
        render=render,
        params=[
            _id_param(prefix=f"{prefix}-"),
            fs.Param(
                "patient", "reference", fs.reference_q("patient_id"), "Task.for", f"{HL7_SP}/Task-patient"
            ),
            fs.Param(
                "status", "token", fs.code_q("status", allowed=TASK_STATUSES), "", f"{HL7_SP}/Task-status"
            ),
            fs.Param(
                "code",
                "token",
                _task_code(code),
                f"handoff ({fhir.TASK_KIND_SYSTEM}) or fulfill ({fhir.TASK_CODE_SYSTEM}, a referral)",
                f"{HL7_SP}/Task-code",
            ),
            fs.Param("authored-on", "date", fs.date_q("created_at__date"), "", f"{HL7_SP}/Task-authored-on"),
            _last_updated(),
        ],
        sorts={"authored-on": "created_at", "_lastUpdated": "updated_at"},
        includes={"Task:patient": patient_includes("patient")},
        default_order=("created_at", "pk"),
        requires_one_of=("patient", "_id"),
    )


_handoff_part = _task_part(
    "handoff",
    lambda user: restrict(
        Handoff.objects.select_related("from_user", "to_user", "to_discipline"), user, patient_path="patient"
    ),
    lambda view, rows: [(view.url(f"Task/handoff-{h.pk}"), fhir.handoff_task_resource(h)) for h in rows],
    "handoff",
)
_referral_part = _task_part(
    "referral",
    lambda user: restrict(
        Referral.objects.select_related("service__organization", "referred_by"), user, patient_path="patient"
    ),
    lambda view, rows: [(view.url(f"Task/referral-{r.pk}"), fhir.referral_task_resource(r)) for r in rows],
    "fulfill",
)
fs.register(
    fs.SearchType(
        kind="Task",
        queryset=_handoff_part.queryset,
        render=_handoff_part.render,
        params=_handoff_part.params,
        sorts=_handoff_part.sorts,
        includes=_handoff_part.includes,
        requires_one_of=("patient", "_id"),
        parts=[("handoff", _handoff_part), ("referral", _referral_part)],
    )
)


# Practitioner and PractitionerRole: the members of the teams the caller may see -------
def _practitioner_name(value: str, name: str, modifier: str = "") -> Q:
    return fs.string_q("first_name", "last_name", "username")(value, name, modifier)


_practitioner_name.modifiers = ("exact", "contains")  # type: ignore[attr-defined]


def _practitioner_identifier(value: str, name: str) -> Q:
    token = fs.Token.parse(value)
    if not token.matches_system(fhir.USER_SYSTEM) or not token.code:
        return Q(pk__in=[])
    return Q(username=token.code)


def _membership_role(value: str, name: str) -> Q:
    token = fs.Token.parse(value)
    q = Q(pk__in=[])
    if token.matches_system(fhir.DISCIPLINE_SYSTEM):
        q |= Q(discipline__code=token.code)
    if token.matches_system(fhir.SNOMED):
        q |= Q(
            discipline__code__in=[d for d, (code, _) in fhir.DISCIPLINE_SNOMED.items() if code == token.code]
        )
    if token.matches_system(fhir.TEAM_ROLE_SYSTEM):
        q |= Q(role=token.code)
    return q


fs.register(
    fs.SearchType(
        kind="Practitioner",
        queryset=visible_practitioners,
        render=lambda view, rows: [
            (view.url(f"Practitioner/{u.pk}"), fhir.practitioner_resource(u, u.disciplines.all()))
            for u in rows
        ],
        params=[
            _id_param(),
            fs.Param("name", "string", _practitioner_name, "", f"{HL7_SP}/Practitioner-name"),
            fs.Param(
                "identifier",
                "token",
                _practitioner_identifier,
                "The username",
                f"{HL7_SP}/Practitioner-identifier",
            ),
        ],
        patient_path=None,
        profile=fhir.US_CORE_PRACTITIONER,
    )
)
fs.register(
    fs.SearchType(
        kind="PractitionerRole",
        queryset=visible_memberships,
        render=lambda view, rows: [
            (view.url(f"PractitionerRole/{m.pk}"), fhir.practitioner_role_resource(m)) for m in rows
        ],
        params=[
            _id_param(),
            fs.Param(
                "practitioner",
                "reference",
                fs.reference_q("user_id", "Practitioner"),
                "Practitioner/<id>",
                f"{HL7_SP}/PractitionerRole-practitioner",
            ),
            fs.Param(
                "role",
                "token",
                _membership_role,
                "Discipline, its SNOMED CT occupation, or team role",
                f"{HL7_SP}/PractitionerRole-role",
            ),
        ],
        includes={"PractitionerRole:practitioner": lambda view, rows: _practitioners_of(view, rows)},
        patient_path=None,
        profile=fhir.US_CORE_PRACTITIONER_ROLE,
    )
)


def _practitioners_of(view: FHIRView, memberships: list) -> list[tuple[str, dict]]:
    users = (
        visible_practitioners(view.request.user)
        .filter(pk__in={m.user_id for m in memberships})
        .order_by("id")
    )
    return [
        (view.url(f"Practitioner/{u.pk}"), fhir.practitioner_resource(u, u.disciplines.all())) for u in users
    ]


# ---------------------------------------------------------------------------
# Patient/$everything: one builder per section, in order. Other modules add theirs
# with `everything_section`; `_type` picks sections by the resource types they emit.
# ---------------------------------------------------------------------------
EverythingBuilder = Callable[["FHIRView", PatientAccess], list[tuple[str, dict]]]
EVERYTHING: list[tuple[tuple[str, ...], EverythingBuilder]] = []


def everything_section(*kinds: str):
    """Register a builder of (fullUrl, resource) pairs for Patient/$everything; `kinds`
    are the resource types it emits (for `_type`). Queries must not grow with rows."""

    def decorator(builder: EverythingBuilder) -> EverythingBuilder:
        EVERYTHING.append((kinds, builder))
        return builder

    return decorator


@everything_section("Patient")
def _everything_patient(view, access):
    return [(view.url(f"Patient/{access.patient.pk}"), fhir.patient_resource(access.patient))]


@everything_section("CareTeam")
def _everything_careteam(view, access):
    team = careteam_resources([access.patient])[0]
    return [(view.url(f"CareTeam/{access.patient.pk}"), team)] if team is not None else []


@everything_section("CarePlan")
def _everything_careplans(view, access):
    plans = _plans(access.patient.pk)
    return [
        (view.url(f"CarePlan/{p.pk}"), r) for p, r in zip(plans, _plan_resources(access, plans), strict=True)
    ]


@everything_section("Goal")
def _everything_goals(view, access):
    pid = access.patient.pk
    return [(view.url(f"Goal/{g.pk}"), fhir.goal_resource(g, pid)) for g in _goals(access)]


@everything_section("ServiceRequest", "Task")
def _everything_referrals(view, access):
    entries = []
    for referral in _referrals(access):
        entries.append((view.url(f"ServiceRequest/{referral.pk}"), fhir.service_request_resource(referral)))
        entries.append((view.url(f"Task/referral-{referral.pk}"), fhir.referral_task_resource(referral)))
    return entries


@everything_section("Task")
def _everything_handoffs(view, access):
    return [
        (view.url(f"Task/handoff-{h.pk}"), fhir.handoff_task_resource(h))
        for h in _handoffs(access.patient.pk)
    ]


@everything_section("Encounter", "MedicationStatement")
def _everything_transitions(view, access):
    return transitions_fhir.everything_entries(access, view.url)


@everything_section("Appointment", "Encounter")
def _everything_visits(view, access):
    return visit_fhir.everything_entries(access, view.url)


@everything_section("QuestionnaireResponse")
def _everything_screenings(view, access):
    return [
        (view.url(f"QuestionnaireResponse/{r.pk}"), screening.response_resource(r))
        for r in _questionnaire_responses(access)
    ]


def portal_everything_entries(view, portal) -> list[tuple[str, dict]]:
    """$everything for a portal account, from portal.selectors only. Resources are built
    from the columns alone (what an import kept of its source, notes and condition
    references included, is left out), and every reference points at something shown."""
    patient = portal.patient
    plan = portal_selectors.portal_plan_of(patient)
    entries = [(view.url(f"Patient/{patient.pk}"), fhir.patient_resource(patient))]
    team = careteam_resources([patient])[0]
    if team is not None:
        entries.append((view.url(f"CareTeam/{patient.pk}"), team))
    if plan is None:
        return entries
    goals = list(
        portal_selectors.shared_goals([plan.pk])
        .filter(lifecycle_status__in=portal_selectors.PORTAL_GOAL_STATUSES)
        .select_related("owner_discipline")
        .order_by("id")
    )
    goal_ids = [g.pk for g in goals]
    activities = list(
        portal_selectors.shared_activities([plan.pk])
        .filter(status__in=portal_selectors.PORTAL_ACTIVITY_STATUSES)
        .select_related("owner_discipline", "assigned_to")
        .prefetch_related(Prefetch("goals", queryset=Goal.objects.filter(pk__in=goal_ids).only("id")))
        .order_by("id")
    )
    for obj in (plan, *goals, *activities):
        obj.fhir = {}
    entries.append((view.url(f"CarePlan/{plan.pk}"), fhir.careplan_resource(plan, goals, activities)))
    entries += [(view.url(f"Goal/{g.pk}"), fhir.goal_resource(g, patient.pk)) for g in goals]
    shown = portal_selectors.portal_plan(portal)
    entries += [(view.url(f"ServiceRequest/{r.pk}"), _portal_service_request(r)) for r in shown.referrals]
    return entries


def _portal_service_request(referral) -> dict:
    """A referral as the patient sees it: no reference to the need it was made for (a
    need the patient sees is not a FHIR resource of theirs here) or to notes."""
    resource = fhir.service_request_resource(referral)
    for key in ("reasonReference", "reasonCode", "note", "supportingInfo", "text"):
        resource.pop(key, None)
    return resource


# ---------------------------------------------------------------------------
# Endpoints
# ---------------------------------------------------------------------------
class MetadataView(FHIRView):
    """The CapabilityStatement: what this server offers (public, like any FHIR server's),
    written from the search table."""

    permission_classes = [permissions.AllowAny]
    authentication_classes: list = []

    def get(self, request):
        return self.respond(
            {
                "resourceType": "CapabilityStatement",
                "status": "active",
                "date": "2026-12-04",
                "publisher": "CareTeam",
                "kind": "instance",
                "software": {"name": "CareTeam"},
                "implementation": {"description": "CareTeam FHIR R4 API", "url": self.url("")},
                "fhirVersion": "4.0.1",
                "format": [fhir.FHIR_JSON, "json"],
                "rest": [
                    {
                        "mode": "server",
                        "documentation": "Searches page with _count and _offset (Bundle.link next/"
                        "previous), answer _summary=count, sort with _sort on the listed dates and "
                        "include the listed references; comma lists mean OR. An unsupported "
                        "parameter is ignored (and left out of link[self]), or refused with 400 "
                        "under 'Prefer: handling=strict'. JSON only (_format=xml answers 406).",
                        "security": {
                            "description": "Authorization: Bearer <token> (or Token <token>) from "
                            "POST /api/v1/auth/token/, or a signed-in session. Same access rules "
                            "as the application: only patients whose team the caller is on."
                        },
                        "resource": fs.capability_resources(),
                    }
                ],
            }
        )


class NotFoundView(FHIRView):
    """Any /fhir/ URL no endpoint serves: an OperationOutcome, never the HTML page."""

    permission_classes = [permissions.AllowAny]

    def _refuse(self, request, *args, **kwargs):
        path = request.path.removeprefix("/fhir").strip("/")
        parts = path.split("/") if path else []
        if not parts:
            if request.method == "POST":
                raise MethodNotAllowed(
                    "POST",
                    "Batch and transaction Bundles are not accepted at the base URL; import a CarePlan "
                    "Bundle with POST /fhir/Patient/<id>/CarePlan/$import.",
                )
            raise NotFound("See /fhir/metadata for what this server offers.")
        kind = parts[0]
        if kind not in fs.REGISTRY and kind != "metadata":
            raise NotFound(f"Resource type {kind} is not supported by this server (see /fhir/metadata).")
        if "_history" in parts:
            raise NotFound("Version history (_history, vread) is not supported by this server.")
        raise NotFound(f"{path} is not known.")

    get = post = put = patch = delete = _refuse


@csrf_exempt  # answers 404 and writes nothing, whatever the method
def api_not_found(request, *args, **kwargs):
    """Unknown /api/ URLs answer JSON, not the HTML 404 page (a missing trailing slash
    on GET is redirected, as Django's APPEND_SLASH would)."""
    if request.method in ("GET", "HEAD") and not request.path.endswith("/"):
        try:
            match = resolve(request.path + "/")
        except Resolver404:
            match = None
        if match is not None and match.url_name != "api-not-found":
            query = request.META.get("QUERY_STRING", "")
            return HttpResponsePermanentRedirect(request.path + "/" + (f"?{query}" if query else ""))
    return JsonResponse({"detail": "Not found."}, status=404)


class PatientReadView(FHIRView):
    def get(self, request, patient_id: int):
        access = access_patient_by_id(request.user, patient_id)
        self.audit_read(access.patient, access.patient.pk)
        return self.respond(fhir.patient_resource(access.patient))

    def put(self, request, patient_id: int):
        """Update demographics from a Patient resource, with If-Match (428 without, 412
        when stale). The MRN cannot change: a different one is a 400."""
        from django.db import transaction

        from patients import services as patient_services

        from .base import expected_version

        access = access_patient_by_id(request.user, patient_id, for_write=True)
        version = expected_version(request)
        data = fhir.parse_patient(request.data)
        if request.data.get("id") not in (None, str(patient_id)):
            raise fhir_bad_request("Patient.id differs from the id in the URL.")
        if data.pop("mrn") not in ("", access.patient.mrn):
            raise fhir_bad_request("The MRN cannot be changed.")
        with transaction.atomic():
            patient = patient_services.patient_update(
                by=request.user, access=access, data=data, expected_version=version, request=request
            )
        return self.respond(fhir.patient_resource(patient))


class PatientSearchView(FHIRView):
    """GET: search (the Patient row of the search table). POST: create, conditionally."""

    search_kind = "Patient"

    def post(self, request):
        return patient_create(self, request)


def _if_none_exist(request) -> str | None:
    """The MRN of an `If-None-Exist: identifier=[system|]value` header; None without one."""
    from urllib.parse import parse_qs

    header = request.headers.get("If-None-Exist")
    if header is None:
        return None
    values = parse_qs(header).get("identifier", [])
    if len(values) != 1 or not values[0].strip():
        raise fhir_bad_request("If-None-Exist must be identifier=[system|]value.")
    system, _, value = values[0].rpartition("|")
    if system and system != fhir.MRN_SYSTEM:
        raise fhir_bad_request(f"If-None-Exist: only the MRN system ({fhir.MRN_SYSTEM}) is matched.")
    return value.strip()


class ExistsHidden(APIException):
    status_code = 412
    default_detail = (
        "A patient with this identifier exists on a care team you are not on; "
        "ask the patient's case manager to add you."
    )
    default_code = "conflict"


def patient_create(view: FHIRView, request) -> Response:
    """POST /fhir/Patient. With `If-None-Exist: identifier=<MRN>` an existing record is
    answered (200) instead of created again, so a sender may repeat itself safely; a
    record the caller may not see answers 412 without its content. Name-and-birth-date
    look-alikes are not refused here: a sending system names its patient by MRN."""
    from django.db import transaction

    from patients import services as patient_services
    from patients.models import Patient, normalise_mrn

    data = fhir.parse_patient(request.data)
    mrn = _if_none_exist(request)
    data["mrn"] = normalise_mrn(data["mrn"])
    if mrn is not None:
        mrn = normalise_mrn(mrn)
        if data["mrn"] and data["mrn"] != mrn:
            raise fhir_bad_request("If-None-Exist names another MRN than the resource's identifier.")
        existing = Patient.objects.filter(mrn__iexact=mrn).first() if mrn else None
        if existing is not None:
            access = patient_access(request.user, existing)
            if not access.on_team:
                audit_denied(
                    request, url_kwargs={"patient_id": existing.pk}, detail="FHIR conditional create"
                )
                raise ExistsHidden()
            view.audit_read(existing, existing.pk)
            response = view.respond(fhir.patient_resource(existing), status=200)
            response["Location"] = view.url(f"Patient/{existing.pk}")
            return response
        data["mrn"] = mrn
    with transaction.atomic():
        patient, _membership = patient_services.patient_register(
            by=request.user, data=data, not_a_duplicate=True, request=request
        )
    response = view.respond(fhir.patient_resource(patient), status=201)
    response["Location"] = view.url(f"Patient/{patient.pk}")
    return response


class PatientEverythingView(FHIRView):
    """Everything the caller may see about one patient, as one searchset Bundle."""

    def get(self, request, patient_id: int):
        if is_portal_user(request.user):
            return self.portal_everything(request, patient_id)
        access = access_patient_by_id(request.user, patient_id)
        wanted = self.types()
        entries = []
        for kinds, builder in EVERYTHING:
            if wanted is None or wanted & set(kinds):
                entries += [
                    (url, r)
                    for url, r in builder(self, access)
                    if wanted is None or r["resourceType"] in wanted
                ]
        audit(
            user=request.user,
            action=AuditAction.EXPORT,
            obj=access.patient,
            patient_id=access.patient.pk,
            request=request,
            detail=f"FHIR $everything, {len(entries)} resources",
        )
        return self.respond(fhir.bundle(entries))

    def portal_everything(self, request, patient_id):
        """The patient-access contract: a portal account's own (or consented) patient
        only (any other id: 404), and of it only what the portal shows
        (portal.selectors): the Patient, the CarePlan with its shared goals and
        activities, the shared Goals, the CareTeam and referrals for shown needs. No
        sensitive or unshared item, no note, conversation, handoff or audit event."""
        portal = access_portal_patient(request.user, patient_id)
        wanted = self.types()
        entries = [
            (url, r)
            for url, r in portal_everything_entries(self, portal)
            if wanted is None or r["resourceType"] in wanted
        ]
        audit(
            user=request.user,
            action=AuditAction.EXPORT,
            obj=portal.patient,
            patient_id=portal.patient.pk,
            request=request,
            detail=f"FHIR $everything (portal), {len(entries)} resources",
        )
        return self.respond(fhir.bundle(entries))

    def types(self) -> set[str] | None:
        """`_type=Goal,CarePlan`: only those resource types; an unknown type is a 400 under
        strict handling and otherwise ignored."""
        raw = self.request.query_params.getlist("_type")
        if not raw:
            return None
        known = {kind for kinds, _ in EVERYTHING for kind in kinds}
        wanted = {v for value in raw for v in fs.split_values(value, "_type")}
        unknown = wanted - known
        if unknown and prefers_strict(self.request):
            raise fhir_bad_request(f"_type: $everything holds no {', '.join(sorted(unknown))}.")
        return wanted & known


class CarePlanReadView(FHIRView):
    def get(self, request, plan_id: int):
        plan, access = access_item(
            request.user,
            CarePlan.objects.select_related("patient", "author"),
            plan_id,
            patient_path="patient",
        )
        self.audit_read(plan, plan.patient_id)
        return self.respond(_plan_resources(access, [plan])[0])


class CarePlanSearchView(FHIRView):
    """GET: search. POST: import a CarePlan Bundle for the patient its CarePlan.subject
    names (same as Patient/{id}/CarePlan/$import)."""

    search_kind = "CarePlan"

    def post(self, request):
        data = check_import_size(request.data)
        subjects = [
            ((e.get("resource") or {}).get("subject") or {}).get("reference") or ""
            for e in (data.get("entry") or [] if isinstance(data, dict) else [])
            if isinstance(e, dict) and (e.get("resource") or {}).get("resourceType") == "CarePlan"
        ]
        subject = subjects[0] if subjects else ""
        if not subject.startswith("Patient/") or not subject.removeprefix("Patient/").isdigit():
            raise fhir_bad_request(
                "CarePlan.subject must reference the Patient (Patient/<id>), or import with "
                "POST /fhir/Patient/<id>/CarePlan/$import."
            )
        return import_response(self, subject.removeprefix("Patient/"), data)


class CarePlanImportView(FHIRView):
    """Import a transaction or collection Bundle of CarePlans and Goals for this patient
    (careteam/api/fhir_import.py). `?unreferenced-goals=active-plan` adds Goals no
    CarePlan references to the patient's active plan; `If-None-Exist: identifier=s|v`
    answers the plan already imported with that identifier instead."""

    def post(self, request, patient_id: int):
        access_patient_by_id(request.user, patient_id)  # 404 before reading the body
        return import_response(self, patient_id, check_import_size(request.data))


class ImportTooLarge(APIException):
    status_code = 413
    default_detail = "The Bundle holds too many entries."
    default_code = "too-costly"


def check_import_size(data):
    """413 for a Bundle of more than FHIR_IMPORT_MAX_ENTRIES entries, before it is
    validated or anything is written."""
    entries = data.get("entry") if isinstance(data, dict) else None
    limit = settings.FHIR_IMPORT_MAX_ENTRIES
    if isinstance(entries, list) and len(entries) > limit:
        raise ImportTooLarge(
            f"The Bundle holds {len(entries)} entries; at most {limit} are imported at once."
        )
    return data


def import_response(view: FHIRView, patient_id, data) -> Response:
    """Answer a `collection` Bundle: the imported (or already imported) CarePlans, then an
    OperationOutcome with an `information` summary and a `warning` for each element not
    kept. 201 when something was written, 200 when nothing was."""
    from django.db import transaction

    from . import fhir_import

    request = view.request
    try:
        access = access_patient_by_id(request.user, patient_id, for_write=True)
    except (Http404, PermissionDenied):
        audit_denied(request, url_kwargs={"patient_id": patient_id}, detail="FHIR CarePlan import")
        raise
    pid = access.patient.pk
    wanted = _if_none_exist_identifier(request)
    if wanted is not None:
        found = fhir_import.existing_plan(pid, [f"identifier:{wanted}"])
        if found is not None:
            return _import_answer(view, access, [found], fhir_import.Issues(), status=200)
    spec = fhir_import.parse_bundle(data, patient_id=pid)
    attach = request.query_params.get("unreferenced-goals") == "active-plan"
    with transaction.atomic():
        result = fhir_import.careplans_import(
            access=access, by=request.user, spec=spec, attach_loose_goals=attach, request=request
        )
    written = bool(result.created or result.goals_attached)
    result.issues.warnings.insert(
        0,
        {
            "severity": "information",
            "code": "informational",
            "diagnostics": f"{len(result.created)} care plans imported, {len(result.unchanged)} already "
            f"imported and unchanged, {result.goals_attached} unreferenced goals added to the active plan.",
        },
    )
    return _import_answer(
        view, access, result.created + result.unchanged, result.issues, status=201 if written else 200
    )


def _if_none_exist_identifier(request) -> str | None:
    from urllib.parse import parse_qs

    header = request.headers.get("If-None-Exist")
    if header is None:
        return None
    values = parse_qs(header).get("identifier", [])
    if len(values) != 1 or not values[0].strip() or "|" not in values[0]:
        raise fhir_bad_request("If-None-Exist must be identifier=system|value.")
    return values[0].strip()


def _import_answer(view: FHIRView, access, plans, issues, *, status: int) -> Response:
    access = patient_access(view.request.user, access.patient)
    rows = list(CarePlan.objects.filter(pk__in=[p.pk for p in plans]).select_related("author").order_by("id"))
    entries = [
        {"fullUrl": view.url(f"CarePlan/{p.pk}"), "resource": r}
        for p, r in zip(rows, _plan_resources(access, rows), strict=True)
    ]
    outcome = {
        "resourceType": "OperationOutcome",
        "issue": issues.warnings
        or [{"severity": "information", "code": "informational", "diagnostics": "Already imported."}],
    }
    response = view.respond(
        {"resourceType": "Bundle", "type": "collection", "entry": [*entries, {"resource": outcome}]},
        status=status,
    )
    if len(rows) == 1:
        response["Location"] = view.url(f"CarePlan/{rows[0].pk}")
    return response


class CareTeamReadView(FHIRView):
    def get(self, request, patient_id: int):
        access = access_patient_by_id(request.user, patient_id)
        audit(
            user=request.user,
            action=AuditAction.VIEW,
            object_type="fhir.CareTeam",
            object_id=access.patient.pk,
            patient_id=access.patient.pk,
            request=request,
            detail="FHIR read",
        )
        return self.respond(_careteam(access))


class CareTeamSearchView(FHIRView):
    search_kind = "CareTeam"


class GoalReadView(FHIRView):
    def get(self, request, goal_id: int):
        goal, access = access_item(
            request.user,
            Goal.objects.select_related("care_plan__patient", "owner_discipline"),
            goal_id,
            patient_path="care_plan__patient",
        )
        self.audit_read(goal, access.patient.pk)
        return self.respond(fhir.goal_resource(goal, access.patient.pk))


class GoalSearchView(FHIRView):
    search_kind = "Goal"


class ServiceRequestReadView(FHIRView):
    def get(self, request, referral_id: int):
        referral, _ = referral_for_user(request.user, referral_id)
        self.audit_read(referral, referral.patient_id)
        return self.respond(fhir.service_request_resource(referral))


class ServiceRequestSearchView(FHIRView):
    search_kind = "ServiceRequest"


class TaskReadView(FHIRView):
    """Task/handoff-<id> (a handoff) or Task/referral-<id> (the task tracking a referral)."""

    def get(self, request, task_id: str):
        kind, _, raw_id = task_id.partition("-")
        try:
            return self.read(request, kind, raw_id)
        except Http404:
            if kind in ("handoff", "referral"):
                audit_denied(request, url_kwargs={f"{kind}_id": raw_id}, detail=f"FHIR Task/{kind} read")
            raise

    def read(self, request, kind: str, raw_id: str):
        if kind == "handoff":
            handoff, access = access_item(
                request.user,
                Handoff.objects.select_related("patient", "from_user", "to_user", "to_discipline"),
                raw_id,
                patient_path="patient",
            )
            self.audit_read(handoff, handoff.patient_id)
            return self.respond(fhir.handoff_task_resource(handoff))
        if kind == "referral":
            referral, _ = referral_for_user(request.user, raw_id)
            self.audit_read(referral, referral.patient_id)
            return self.respond(fhir.referral_task_resource(referral))
        raise Http404


class TaskSearchView(FHIRView):
    search_kind = "Task"


class PractitionerReadView(FHIRView):
    def get(self, request, practitioner_id: int):
        user = visible_practitioners(request.user).filter(pk=practitioner_id).first()
        if user is None:
            raise Http404
        return self.respond(fhir.practitioner_resource(user, user.disciplines.all()))


class PractitionerSearchView(FHIRView):
    search_kind = "Practitioner"


class PractitionerRoleReadView(FHIRView):
    def get(self, request, role_id: int):
        membership = visible_memberships(request.user).filter(pk=role_id).first()
        if membership is None:
            raise Http404
        return self.respond(fhir.practitioner_role_resource(membership))


class PractitionerRoleSearchView(FHIRView):
    search_kind = "PractitionerRole"


@everything_section("Communication")
def _everything_communications(view, access):
    return [(view.url(path), resource) for path, resource in communications_for(access)]
