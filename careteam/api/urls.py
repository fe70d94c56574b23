"""REST API (/api/v1/), OpenAPI schema and docs, and FHIR R4 (/fhir/)."""

from django.urls import include, path
from drf_spectacular.views import SpectacularAPIView, SpectacularSwaggerView
from rest_framework.routers import DefaultRouter

from . import views

router = DefaultRouter()
router.root_view_name = "api-root"
router.register("patients", views.PatientViewSet, basename="api-patient")
router.register("care-plans", views.CarePlanViewSet, basename="api-care-plan")
router.register("goals", views.GoalViewSet, basename="api-goal")
router.register("needs", views.NeedViewSet, basename="api-need")
router.register("activities", views.ActivityViewSet, basename="api-activity")
router.register("team-memberships", views.TeamMembershipViewSet, basename="api-team-membership")
router.register("handoffs", views.HandoffViewSet, basename="api-handoff")
router.register("referrals", views.ReferralViewSet, basename="api-referral")
router.register("organizations", views.OrganizationViewSet, basename="api-organization")
router.register("services", views.ServiceViewSet, basename="api-service")
router.register("notifications", views.NotificationViewSet, basename="api-notification")
router.register("audit-events", views.AuditEventViewSet, basename="api-audit-event")

SCHEMA_SETTINGS = {
    "POSTPROCESSING_HOOKS": [
        "drf_spectacular.hooks.postprocess_schema_enums",
        "careteam.api.schema.add_error_responses",
    ],
    "COMPONENT_SPLIT_REQUEST": True,
    "ENUM_NAME_OVERRIDES": {
        "PatientStatusEnum": "patients.models.PatientStatus",
        "CarePlanStatusEnum": "careplans.models.CarePlanStatus",
        "GoalLifecycleEnum": "careplans.models.GoalLifecycle",
        "NeedStatusEnum": "careplans.models.NeedStatus",
        "ActivityStatusEnum": "careplans.models.ActivityStatus",
        "MembershipStatusEnum": "careteam.models.MembershipStatus",
        "HandoffStatusEnum": "careteam.models.HandoffStatus",
        "HandoffKindEnum": "careteam.models.HandoffKind",
        "HandoffPriorityEnum": "careteam.models.Priority",
        "NotificationKindEnum": "careteam.models.NotificationKind",
        "AuditActionEnum": "careteam.models.AuditAction",
        "AuditOutcomeEnum": "careteam.models.AuditOutcome",
        "ReferralStatusEnum": "referrals.models.ReferralStatus",
        "ReferralOutcomeEnum": "referrals.models.ReferralOutcome",
        "ServiceStatusEnum": "referrals.models.ServiceStatus",
        "GoalPriorityEnum": "careplans.models.GoalPriority",
        "ReferralPriorityEnum": [("routine", "Routine"), ("urgent", "Urgent"), ("asap", "ASAP")],
    },
}

urlpatterns = [
    path("api/v1/auth/token/", views.TokenView.as_view(), name="api-token"),
    path("api/v1/", include(router.urls)),
    path(
        "api/schema/",
        SpectacularAPIView.as_view(custom_settings=SCHEMA_SETTINGS),
        name="api-schema",
    ),
    path("api/docs/", SpectacularSwaggerView.as_view(url_name="api-schema"), name="api-docs"),
]
