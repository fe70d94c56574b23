"""Property-based run of the whole REST API against its own OpenAPI schema: generated
requests (valid and invalid) from a signed-in clinician must never cause a server error
nor a response the schema does not describe (status, content type, body, headers)."""

from __future__ import annotations

import pytest
import schemathesis
from django.core.signals import request_finished, request_started
from django.core.wsgi import get_wsgi_application
from django.db import close_old_connections
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from knox.models import AuthToken
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from tests import factories as f

pytestmark = pytest.mark.django_db

CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_schema_conformance,
    response_headers_conformance,
]


@pytest.fixture
def wsgi_keeps_test_connection():
    """Requests go through the real WSGI handler, which closes the database connection at
    the end of each request; the test's transaction must survive them (as Django's own
    test client arranges)."""
    request_started.disconnect(close_old_connections)
    request_finished.disconnect(close_old_connections)
    yield
    request_started.connect(close_old_connections)
    request_finished.connect(close_old_connections)


@pytest.fixture
def api_data(world, settings, wsgi_keeps_test_connection):
    settings.ALLOWED_HOSTS = ["localhost", "testserver"]
    goal = f.GoalFactory(care_plan=world.plan)
    need = f.NeedFactory(care_plan=world.plan)
    activity = f.ActivityFactory(care_plan=world.plan, owner_discipline=f.discipline("case-management"))
    handoff = f.HandoffFactory(patient=world.patient, from_user=world.nurse, to_user=world.case_manager)
    referral = f.ReferralFactory(patient=world.patient, care_plan=world.plan, referred_by=world.case_manager)
    note = f.NoteFactory(care_plan=world.plan, author=world.nurse)
    _, token = AuthToken.objects.create(user=world.case_manager)
    return {
        "token": token,
        "ids": {
            "patient_id": world.patient.pk,
            "plan_id": world.plan.pk,
            "goal_id": goal.pk,
            "need_id": need.pk,
            "activity_id": activity.pk,
            "handoff_id": handoff.pk,
            "referral_id": referral.pk,
            "note_id": note.pk,
            "membership_id": world.patient.memberships.first().pk,
            "service_id": str(referral.service_id),
            "organization_id": str(referral.service.organization_id),
        },
    }


def _operations():
    # a handler built now, so its middleware reads the test's settings (plain HTTP)
    schema = schemathesis.openapi.from_wsgi("/api/schema/", get_wsgi_application())
    for result in schema.get_all_operations():
        operation = result.ok()
        # Revoking the token would sign the run out half-way; revocation has its own test.
        if operation.path == "/api/v1/auth/token/" and operation.method.upper() == "DELETE":
            continue
        yield operation


def test_api_answers_generated_requests_as_its_schema_says(api_data):
    headers = {"Authorization": f"Token {api_data['token']}"}
    failures: list[str] = []
    operations = list(_operations())
    assert len(operations) > 30
    for operation in operations:
        names = [p.name for p in operation.path_parameters]
        real = {name: api_data["ids"][name] for name in names if name in api_data["ids"]}
        # Random ids (mostly 404s), and real objects on the clinician's team, valid and
        # invalid requests, so reads and changes of existing rows are exercised too.
        strategies = [operation.as_strategy(GenerationMode.POSITIVE)]
        if real:
            strategies.append(operation.as_strategy(GenerationMode.POSITIVE, path_parameters=real))
        strategies.append(operation.as_strategy(GenerationMode.NEGATIVE, path_parameters=real or None))

        @given(case=st.one_of(strategies))
        @settings(max_examples=5, deadline=None, derandomize=True, suppress_health_check=list(HealthCheck))
        def run(case):
            case.call_and_validate(headers=headers, checks=CHECKS)

        try:
            run()
        except (Exception, BaseExceptionGroup) as exc:  # noqa: BLE001 - collect every operation's failure
            failures.append(f"{operation.method.upper()} {operation.path}: {exc}")
    assert not failures, "\n\n".join(failures)
