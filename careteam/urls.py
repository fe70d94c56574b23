"""Root URL configuration: each app mounts its own URL module here."""

from django.contrib import admin
from django.contrib.auth import views as auth_views
from django.urls import include, path

from . import views

urlpatterns = [
    path("", views.home, name="home"),
    path("health/", views.health, name="health"),
    path("accounts/login/", auth_views.LoginView.as_view(), name="login"),
    path("accounts/logout/", auth_views.LogoutView.as_view(), name="logout"),
    path("admin/", admin.site.urls),
    path("patients/", include("patients.urls")),
    path("plans/", include("careplans.urls")),
    path("team/", include("careteam.urls_team")),
    path("security/", include("careteam.urls_security")),
    path("referrals/", include("referrals.urls")),
    path("", include("careteam.api.urls")),
]
