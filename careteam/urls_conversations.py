"""URLs of a patient's conversations (/patients/<patient_id>/conversations/...)."""

from django.urls import path

from . import views_conversations as views

app_name = "conversations"
urlpatterns: list = [
    path("<int:patient_id>/conversations/", views.patient_conversations, name="patient_list"),
    path("<int:patient_id>/conversations/new/", views.conversation_new, name="new"),
    path("<int:patient_id>/conversations/<int:conversation_id>/", views.conversation_detail, name="detail"),
    path(
        "<int:patient_id>/conversations/<int:conversation_id>/messages/",
        views.conversation_messages,
        name="messages",
    ),
    path(
        "<int:patient_id>/conversations/<int:conversation_id>/messages/<int:message_id>/edit/",
        views.message_edit,
        name="message_edit",
    ),
    path(
        "<int:patient_id>/conversations/<int:conversation_id>/messages/<int:message_id>/activity/",
        views.make_activity,
        name="make_activity",
    ),
    path(
        "<int:patient_id>/conversations/<int:conversation_id>/messages/<int:message_id>/retract/",
        views.message_retract,
        name="message_retract",
    ),
]
