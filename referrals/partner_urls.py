"""URLs of the partner pages (/partner/): the only pages a partner account reaches
besides its own referrals in the API (settings.ACCOUNT_KIND_PATHS)."""

from django.urls import path

from . import views_partner as views

app_name = "partner"
urlpatterns = [
    path("", views.inbox, name="inbox"),
    path("referrals/<int:referral_id>/", views.referral_detail, name="referral"),
    *[
        path(f"referrals/<int:referral_id>/{action}/", views.referral_action, {"action": action}, name=action)
        for action in views.ACTIONS
    ],
    path("services/<uuid:service_id>/", views.service_edit, name="service"),
    path("welcome/<str:uidb64>/<str:token>/", views.welcome, name="welcome"),
    path("claim/", views.claim, name="claim"),
    path("link/<str:link_token>/", views.link_page, name="link"),
    *[
        path(f"link/<str:link_token>/{action}/", views.link_action, {"action": action}, name=f"link_{action}")
        for action in ("accept", "decline", "complete")
    ],
]
