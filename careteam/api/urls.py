"""REST API (/api/v1/), OpenAPI schema and docs, and FHIR R4 (/fhir/)."""

from django.urls import include, path, re_path
from drf_spectacular.views import SpectacularAPIView, SpectacularSwaggerSplitView
from rest_framework.routers import DefaultRouter

from careplans.api import views as plan_api
from referrals.api import views as referral_api

from . import conversations as conv
from . import fhir_content_views as fc
from . import fhir_views as fv
from . import huddles as hud
from . import views

router = DefaultRouter()
router.root_view_name = "api-root"
router.register("patients", views.PatientViewSet, basename="api-patient")
router.register("care-plans", plan_api.CarePlanViewSet, basename="api-care-plan")
router.register("goals", plan_api.GoalViewSet, basename="api-goal")
router.register("needs", plan_api.NeedViewSet, basename="api-need")
router.register("activities", plan_api.ActivityViewSet, basename="api-activity")
router.register("notes", plan_api.NoteViewSet, basename="api-note")
router.register("team-memberships", views.TeamMembershipViewSet, basename="api-team-membership")
router.register("handoffs", views.HandoffViewSet, basename="api-handoff")
router.register("referrals", referral_api.ReferralViewSet, basename="api-referral")
router.register("organizations", referral_api.OrganizationViewSet, basename="api-organization")
router.register("services", referral_api.ServiceViewSet, basename="api-service")
router.register("notifications", views.NotificationViewSet, basename="api-notification")
router.register("audit-events", views.AuditEventViewSet, basename="api-audit-event")
router.register("conversations", conv.ConversationViewSet, basename="api-conversation")
router.register("huddles", hud.HuddleViewSet, basename="api-huddle")

urlpatterns = [
    path("api/v1/auth/token/", views.TokenView.as_view(), name="api-token"),
    path(
        "api/v1/conversations/<int:conversation_id>/messages/",
        conv.ConversationMessagesView.as_view(),
        name="api-conversation-messages",
    ),
    path("api/v1/", include(router.urls)),
    path(
        "api/schema/",
        SpectacularAPIView.as_view(),
        name="api-schema",
    ),
    path("api/docs/", SpectacularSwaggerSplitView.as_view(url_name="api-schema"), name="api-docs"),
    # FHIR R4
    path("fhir/metadata", fv.MetadataView.as_view(), name="fhir-metadata"),
    path("fhir/Patient", fv.PatientSearchView.as_view(), name="fhir-patient-search"),
    path("fhir/Patient/<int:patient_id>", fv.PatientReadView.as_view(), name="fhir-patient"),
    path(
        "fhir/Patient/<int:patient_id>/$everything",
        fv.PatientEverythingView.as_view(),
        name="fhir-patient-everything",
    ),
    path(
        "fhir/Patient/<int:patient_id>/CarePlan/$import",
        fv.CarePlanImportView.as_view(),
        name="fhir-careplan-import",
    ),
    path("fhir/CarePlan", fv.CarePlanSearchView.as_view(), name="fhir-careplan-search"),
    path("fhir/CarePlan/<int:plan_id>", fv.CarePlanReadView.as_view(), name="fhir-careplan"),
    path("fhir/CareTeam", fv.CareTeamSearchView.as_view(), name="fhir-careteam-search"),
    path("fhir/CareTeam/<int:patient_id>", fv.CareTeamReadView.as_view(), name="fhir-careteam"),
    path("fhir/Goal", fv.GoalSearchView.as_view(), name="fhir-goal-search"),
    path("fhir/Goal/<int:goal_id>", fv.GoalReadView.as_view(), name="fhir-goal"),
    path("fhir/ServiceRequest", fv.ServiceRequestSearchView.as_view(), name="fhir-servicerequest-search"),
    path(
        "fhir/ServiceRequest/<int:referral_id>",
        fv.ServiceRequestReadView.as_view(),
        name="fhir-servicerequest",
    ),
    path("fhir/Task", fv.TaskSearchView.as_view(), name="fhir-task-search"),
    path("fhir/Task/<str:task_id>", fv.TaskReadView.as_view(), name="fhir-task"),
    path("fhir/Practitioner", fv.PractitionerSearchView.as_view(), name="fhir-practitioner-search"),
    path(
        "fhir/Practitioner/<int:practitioner_id>",
        fv.PractitionerReadView.as_view(),
        name="fhir-practitioner",
    ),
    path(
        "fhir/PractitionerRole",
        fv.PractitionerRoleSearchView.as_view(),
        name="fhir-practitionerrole-search",
    ),
    path(
        "fhir/PractitionerRole/<int:role_id>",
        fv.PractitionerRoleReadView.as_view(),
        name="fhir-practitionerrole",
    ),
    path("fhir/Questionnaire", fc.QuestionnaireSearchView.as_view(), name="fhir-questionnaire-search"),
    path(
        "fhir/Questionnaire/<int:questionnaire_id>",
        fc.QuestionnaireReadView.as_view(),
        name="fhir-questionnaire",
    ),
    path(
        "fhir/QuestionnaireResponse",
        fc.QuestionnaireResponseSearchView.as_view(),
        name="fhir-questionnaireresponse-search",
    ),
    path(
        "fhir/QuestionnaireResponse/<int:response_id>",
        fc.QuestionnaireResponseReadView.as_view(),
        name="fhir-questionnaireresponse",
    ),
    path("fhir/PlanDefinition", fc.PlanDefinitionSearchView.as_view(), name="fhir-plandefinition-search"),
    path(
        "fhir/PlanDefinition/<int:template_id>",
        fc.PlanDefinitionReadView.as_view(),
        name="fhir-plandefinition",
    ),
    path(
        "fhir/PlanDefinition/<int:template_id>/$apply",
        fc.PlanDefinitionApplyView.as_view(),
        name="fhir-plandefinition-apply",
    ),
    # anything else under /fhir/ or /api/: an OperationOutcome or JSON 404, never HTML
    re_path(r"^fhir(?:/.*)?$", fv.NotFoundView.as_view(), name="fhir-not-found"),
    re_path(r"^api/.*$", fv.api_not_found, name="api-not-found"),
]
