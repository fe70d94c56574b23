"""URLs of handoffs, the inbox, notifications, caseloads and cover."""

from django.urls import path

from . import views_caseload, views_conversations
from . import views_team as views

app_name = "team"
urlpatterns: list = [
    path("inbox/", views.inbox, name="inbox"),
    path("conversations/", views_conversations.inbox, name="conversations"),
    path("conversations/unread/", views_conversations.unread_count, name="conversations_unread"),
    path("open-handoffs/", views.open_handoffs, name="open_handoffs"),
    path("handoffs/sent/", views.handoffs_sent, name="handoffs_sent"),
    path("patients/<int:patient_id>/handoffs/new/", views.handoff_create, name="handoff_create"),
    path("handoffs/<int:handoff_id>/", views.handoff_detail, name="handoff_detail"),
    path("notifications/<int:notification_id>/", views.notification_detail, name="notification_detail"),
    path("caseloads/", views_caseload.caseload, name="caseload"),
    path("caseloads/reassign/", views_caseload.caseload_reassign, name="caseload_reassign"),
    path("cover/", views_caseload.cover, name="cover"),
]
