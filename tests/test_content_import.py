"""Clinical content in the admin: Questionnaires and plan templates (FHIR PlanDefinition
with contained or referenced ActivityDefinitions) are imported from JSON as new
versions and downloaded as JSON; a bad file is a clear form error and writes nothing."""

from __future__ import annotations

import copy
import json

import pytest
from django.contrib.auth.models import Permission
from django.core.files.uploadedfile import SimpleUploadedFile
from django.urls import reverse

from careplans import plan_templates, screening
from careplans.models import PlanTemplate, Questionnaire, ScreeningRule
from careteam.models import AuditEvent
from tests import factories as f

pytestmark = pytest.mark.django_db

TEMPLATE_IMPORT = reverse("admin:careplans_plantemplate_import")
QUESTIONNAIRE_IMPORT = reverse("admin:careplans_questionnaire_import")


@pytest.fixture
def shipped(world):
    screening.ensure_shipped_questionnaires()
    plan_templates.ensure_shipped_templates()


@pytest.fixture
def content_admin(client, world, shipped):
    user = f.UserFactory(username="content1", is_staff=True)
    user.user_permissions.add(
        Permission.objects.get(codename="manage_clinical_content", content_type__app_label="careplans")
    )
    client.force_login(user)
    client.user = user
    return client


def upload(data, name: str = "upload.json") -> SimpleUploadedFile:
    raw = data if isinstance(data, bytes) else json.dumps(data).encode()
    return SimpleUploadedFile(name, raw, content_type="application/json")


def download(client, url: str) -> dict:
    response = client.get(url)
    assert response.status_code == 200, response.content[:500]
    assert "attachment" in response["Content-Disposition"]
    return json.loads(response.content)


def counts() -> tuple[int, int, int, int]:
    return (
        PlanTemplate.objects.count(),
        Questionnaire.objects.count(),
        ScreeningRule.objects.count(),
        AuditEvent.objects.filter(action="create").count(),
    )


# ---------------------------------------------------------------------------
# Plan templates
# ---------------------------------------------------------------------------
def test_a_shipped_template_exported_from_the_admin_reimports_as_a_new_version_with_equal_items(
    content_admin,
):
    hf = PlanTemplate.objects.get(slug="heart-failure-discharge", version=1)
    resource = download(content_admin, reverse("admin:careplans_plantemplate_download", args=[hf.pk]))
    assert resource["resourceType"] == "PlanDefinition"
    assert {r["resourceType"] for r in resource["contained"]} == {"ActivityDefinition"}
    resource["version"] = "2"
    response = content_admin.post(TEMPLATE_IMPORT, {"file": upload(resource)})
    assert response.status_code == 302, response.content.decode()[:2000]
    v2 = PlanTemplate.objects.get(slug="heart-failure-discharge", version=2)
    assert response["Location"] == reverse("admin:careplans_plantemplate_change", args=[v2.pk])
    assert v2.title == hf.title
    for kind in ("goals", "needs", "activities"):
        assert v2.content[kind] == hf.content[kind], kind
    # relative due dates and disciplines survive explicitly
    activities = {a["key"]: a for a in v2.content["activities"]}
    assert (activities["follow-up-7d"]["due_days"], activities["follow-up-7d"]["owner"]) == (7, "physician")
    goals = {g["key"]: g for g in v2.content["goals"]}
    assert (goals["daily-weight"]["due_days"], goals["daily-weight"]["owner"]) == (14, "nursing")
    assert AuditEvent.objects.filter(action="export", object_id=str(hf.pk)).exists()
    assert AuditEvent.objects.filter(action="create", object_id=str(v2.pk), username="content1").exists()


def test_every_shipped_template_round_trips_through_the_admin(content_admin):
    for template in list(PlanTemplate.objects.all()):
        resource = download(
            content_admin, reverse("admin:careplans_plantemplate_download", args=[template.pk])
        )
        resource["version"] = str(template.version + 1)
        assert content_admin.post(TEMPLATE_IMPORT, {"file": upload(resource)}).status_code == 302
        again = PlanTemplate.objects.get(slug=template.slug, version=template.version + 1)
        assert again.content == template.content


def test_a_bundle_with_referenced_activity_definitions_imports(content_admin):
    hf = PlanTemplate.objects.get(slug="heart-failure-discharge")
    plan = plan_templates.plandefinition_resource(hf)
    definitions = plan.pop("contained")
    base = "https://example.org/fhir/ActivityDefinition"
    for ad in definitions:
        ad["url"], ad["version"] = f"{base}/{ad['id']}", "1"
        # the owner in the participant role only (as another system would send it)
        ad.pop("extension")
    for action in plan["action"]:
        if "definitionCanonical" in action:
            ad_id = action["definitionCanonical"].removeprefix("#")
            action["definitionCanonical"] = f"{base}/{ad_id}|1"
    plan["version"] = "2"
    bundle = {
        "resourceType": "Bundle",
        "type": "collection",
        "entry": [{"resource": r} for r in (plan, *definitions)],
    }
    response = content_admin.post(TEMPLATE_IMPORT, {"file": upload(bundle)})
    assert response.status_code == 302, response.content.decode()[:2000]
    assert PlanTemplate.objects.get(slug=hf.slug, version=2).content == hf.content

    plan["version"] = "3"
    bundle["entry"] = [{"resource": plan}]  # the definitions left out
    before = counts()
    response = content_admin.post(TEMPLATE_IMPORT, {"file": upload(bundle)})
    assert response.status_code == 422
    assert "is neither contained in the PlanDefinition nor sent with it" in response.content.decode()
    assert counts() == before


def test_the_same_template_version_is_refused_with_a_clear_error(content_admin):
    hf = PlanTemplate.objects.get(slug="heart-failure-discharge")
    resource = download(content_admin, reverse("admin:careplans_plantemplate_download", args=[hf.pk]))
    before = counts()
    response = content_admin.post(TEMPLATE_IMPORT, {"file": upload(resource)})
    assert response.status_code == 422
    assert "Version 1 of template heart-failure-discharge is already stored" in response.content.decode()
    assert counts() == before


@pytest.mark.parametrize(
    "raw, message",
    [
        (
            b'{"resourceType": "PlanDefinition", "status": ',
            "is not valid JSON: Expecting value (line 1, column 46)",
        ),
        (b"\xff\xfe not text", "is not UTF-8 text"),
        (b"[1, 2]", "holds a JSON list, not an object"),
        (b'{"resourceType": "Patient", "id": "1"}', "A Patient is not a template"),
        (b"[" * 40 + b"]" * 40, "nested deeper than 32 levels"),
        (b'{"a": ' * 40 + b"1" + b"}" * 40, "nested deeper than 32 levels"),
    ],
)
def test_an_unreadable_template_file_is_a_form_error_and_writes_nothing(content_admin, raw, message):
    before = counts()
    response = content_admin.post(TEMPLATE_IMPORT, {"file": upload(raw)})
    assert response.status_code == 422
    assert message in response.content.decode().replace("&quot;", '"').replace("&#x27;", "'")
    assert counts() == before


def test_a_plandefinition_that_is_not_r4_is_refused_and_nothing_is_written(content_admin):
    hf = PlanTemplate.objects.get(slug="heart-failure-discharge")
    resource = plan_templates.plandefinition_resource(hf)
    resource["version"] = "2"
    r5 = copy.deepcopy(resource)
    r5["actor"] = [{"title": "Nurse", "option": [{"type": "practitioner"}]}]  # R5 only
    before = counts()
    response = content_admin.post(TEMPLATE_IMPORT, {"file": upload(r5)})
    assert response.status_code == 422
    body = response.content.decode()
    assert "Not a valid FHIR R4 PlanDefinition: actor: Extra inputs are not permitted" in body
    bad_status = copy.deepcopy(resource)
    bad_status["status"] = "in-use"
    response = content_admin.post(TEMPLATE_IMPORT, {"file": upload(bad_status)})
    assert response.status_code == 422
    assert (
        "PlanDefinition.status &#x27;in-use&#x27;: give draft, active or retired."
        in response.content.decode()
    )
    assert counts() == before
    assert not PlanTemplate.objects.filter(slug=hf.slug, version=2).exists()


# ---------------------------------------------------------------------------
# Questionnaires
# ---------------------------------------------------------------------------
def test_a_questionnaire_and_its_rules_download_and_reimport_as_a_new_version(content_admin):
    phq9 = Questionnaire.objects.get(name="PHQ_9")
    resource = download(content_admin, reverse("admin:careplans_questionnaire_download", args=[phq9.pk]))
    rules = download(content_admin, reverse("admin:careplans_questionnaire_rules", args=[phq9.pk]))
    assert resource["resourceType"] == "Questionnaire" and rules["sensitivity"] == "behavioural-health"
    resource["version"] = "2.0"
    response = content_admin.post(
        QUESTIONNAIRE_IMPORT,
        {"questionnaire": upload(resource, "phq-9.json"), "rules": upload(rules, "phq-9.rules.json")},
    )
    assert response.status_code == 302, response.content.decode()[:2000]
    new = Questionnaire.objects.get(url=phq9.url, version="2.0")
    assert Questionnaire.objects.filter(url=phq9.url).count() == 2  # the older version stays
    assert (new.scoring, new.sensitivity_id, new.code) == (phq9.scoring, phq9.sensitivity_id, phq9.code)
    fields = ("key", "category", "domain", "description", "conditions", "min_score", "urgent")
    assert list(new.rules.values_list(*fields)) == list(phq9.rules.values_list(*fields))
    assert screening.current_questionnaires().count(new) == 1  # the newest version is offered


def test_the_same_questionnaire_url_and_version_is_refused(content_admin):
    hvs = Questionnaire.objects.get(name="HUNGER_VITAL_SIGN")
    resource = download(content_admin, reverse("admin:careplans_questionnaire_download", args=[hvs.pk]))
    before = counts()
    response = content_admin.post(QUESTIONNAIRE_IMPORT, {"questionnaire": upload(resource)})
    assert response.status_code == 422
    assert f"Version {hvs.version} of {hvs.url} is already stored." in response.content.decode()
    assert counts() == before


def test_bad_questionnaire_uploads_are_form_errors_and_write_nothing(content_admin):
    hvs = Questionnaire.objects.get(name="HUNGER_VITAL_SIGN")
    resource, rules = screening.questionnaire_export(hvs)
    resource["version"] = "9"
    r5 = copy.deepcopy(resource)
    r5["item"][0]["answerConstraint"] = "optionsOnly"  # R5 only
    cases = [
        ({"questionnaire": upload(b"{not json")}, "is not valid JSON"),
        (
            {"questionnaire": upload({"resourceType": "PlanDefinition", "status": "active"})},
            "the file holds a PlanDefinition",
        ),
        ({"questionnaire": upload(r5)}, "Not a valid FHIR R4 Questionnaire: item.0.answerConstraint"),
        ({"questionnaire": upload(resource), "rules": upload(b"[]")}, "holds a JSON list"),
        (
            {
                "questionnaire": upload(resource),
                "rules": upload({"rules": [{"key": "x", "category": "food"}]}),
            },
            "Rule x: a rule needs a description.",
        ),
        (
            {
                "questionnaire": upload(resource),
                "rules": upload(
                    {**rules, "rules": [{**rules["rules"][0], "conditions": [{"link_id": "nope"}]}]}
                ),
            },
            "no item &#x27;nope&#x27;",
        ),
        (
            {"questionnaire": upload(resource), "rules": upload({"sensitivity": "astrology"})},
            "Unknown sensitivity",
        ),
    ]
    before = counts()
    for data, message in cases:
        response = content_admin.post(QUESTIONNAIRE_IMPORT, data)
        assert response.status_code == 422, message
        assert message in response.content.decode(), (message, response.content.decode()[-3000:])
    assert counts() == before


# ---------------------------------------------------------------------------
# Who may
# ---------------------------------------------------------------------------
def test_only_clinical_content_admins_import_or_download(client, world, shipped):
    hf = PlanTemplate.objects.get(slug="heart-failure-discharge")
    staff = f.UserFactory(username="staff1", is_staff=True, disciplines=["nursing"])
    client.force_login(staff)
    urls = [
        TEMPLATE_IMPORT,
        QUESTIONNAIRE_IMPORT,
        reverse("admin:careplans_plantemplate_download", args=[hf.pk]),
        reverse("admin:careplans_plantemplate_changelist"),
    ]
    for url in urls:
        assert client.get(url).status_code == 403, url
    before = counts()
    resource = plan_templates.plandefinition_resource(hf)
    resource["version"] = "5"
    assert client.post(TEMPLATE_IMPORT, {"file": upload(resource)}).status_code == 403
    assert counts() == before
    client.force_login(world.nurse)  # not staff: the admin sends them to sign in
    assert client.get(TEMPLATE_IMPORT).status_code == 302
    client.force_login(world.admin)
    assert client.get(TEMPLATE_IMPORT).status_code == 200


def test_the_admin_lists_link_to_import_and_the_change_page_to_download(content_admin):
    hf = PlanTemplate.objects.get(slug="heart-failure-discharge")
    page = content_admin.get(reverse("admin:careplans_plantemplate_changelist"))
    assert page.status_code == 200 and TEMPLATE_IMPORT in page.content.decode()
    change = content_admin.get(reverse("admin:careplans_plantemplate_change", args=[hf.pk]))
    assert change.status_code == 200 and "Download JSON" in change.content.decode()
    page = content_admin.get(reverse("admin:careplans_questionnaire_changelist"))
    assert page.status_code == 200 and QUESTIONNAIRE_IMPORT in page.content.decode()
    # a status change is the one edit: retiring a version
    response = content_admin.post(
        reverse("admin:careplans_plantemplate_change", args=[hf.pk]), {"status": "retired"}
    )
    assert response.status_code == 302
    hf.refresh_from_db()
    assert hf.status == "retired" and hf.content["goals"]


def test_a_template_version_older_than_the_newest_is_refused_as_older(content_admin):
    hf = PlanTemplate.objects.get(slug="heart-failure-discharge")
    resource = plan_templates.plandefinition_resource(hf)
    resource["version"] = "3"
    assert content_admin.post(TEMPLATE_IMPORT, {"file": upload(resource)}).status_code == 302
    resource["version"] = "2"
    before = counts()
    response = content_admin.post(TEMPLATE_IMPORT, {"file": upload(resource)})
    assert response.status_code == 422
    assert (
        "Version 2 of template heart-failure-discharge is older than the stored v3: "
        "give the import a version newer than v3." in response.content.decode()
    )
    assert counts() == before
