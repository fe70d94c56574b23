"""Root URL configuration: each app mounts its own URL module here."""

from django.contrib import admin
from django.contrib.auth import views as auth_views
from django.urls import include, path
from django.views.generic import RedirectView

from careteam import views, views_account, views_twofactor

urlpatterns = [
    path("", views.home, name="home"),
    path("health/", views.health, name="health"),
    path("", include("careteam.urls_ops")),
    path("accounts/login/", views_twofactor.SignInView.as_view(), name="login"),
    path("accounts/two-factor/", views_twofactor.manage, name="two_factor"),
    path("accounts/two-factor/verify/", views_twofactor.verify, name="two_factor_verify"),
    path("accounts/two-factor/setup/", views_twofactor.setup, name="two_factor_setup"),
    path("accounts/settings/", views_account.account_settings, name="account_settings"),
    path("accounts/logout/", auth_views.LogoutView.as_view(), name="logout"),
    # administrators sign in through the same pages as everyone (second factor included)
    path("admin/login/", RedirectView.as_view(pattern_name="login", query_string=True)),
    path("admin/", admin.site.urls),
    # the worklist, My work and the chart (/work/, /patients/, /patients/<id>/)
    path("", include("workspace.urls")),
    path("patients/", include("careteam.urls_conversations")),
    path("patients/", include("careteam.urls_huddles")),
    path("patients/", include("patients.urls")),
    path("plans/", include("careplans.urls")),
    path("team/", include("careteam.urls_team")),
    path("security/", include("careteam.urls_security")),
    path("referrals/", include("referrals.urls")),
    path("", include("transitions.urls")),
    path("hsds/", include("referrals.hsds_urls")),
    path("partner/", include("referrals.partner_urls")),
    path("visits/", include("visits.urls")),
    path("", include("visits.api")),
    path("portal/", include("portal.urls")),
    path("", include("portal.staff_urls")),
    path("", include("careteam.api.urls")),
]
