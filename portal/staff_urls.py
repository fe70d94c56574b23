"""Staff pages of the portal, mounted beside the chart and the plan."""

from django.urls import path

from . import staff_views

urlpatterns = [
    path("patients/<int:patient_id>/portal-preview/", staff_views.preview, name="portal_preview"),
    path("patients/<int:patient_id>/portal-invite/", staff_views.invite, name="portal_invite"),
    path("plans/goals/<int:goal_id>/share/", staff_views.goal_share, name="portal_goal_share"),
    path("plans/needs/<int:need_id>/share/", staff_views.need_share, name="portal_need_share"),
    path(
        "plans/activities/<int:activity_id>/share/", staff_views.activity_share, name="portal_activity_share"
    ),
]
