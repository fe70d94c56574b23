from django.contrib import admin

from careteam.admin import PatientRestrictedAdmin

from .models import Activity, CarePlan, Goal, Need


@admin.register(CarePlan)
class CarePlanAdmin(PatientRestrictedAdmin):
    list_display = ("title", "patient", "status", "review_due", "version")
    list_filter = ("status",)


@admin.register(Goal)
class GoalAdmin(PatientRestrictedAdmin):
    patient_path = "care_plan__patient"
    list_display = ("description", "care_plan", "expressed_by", "lifecycle_status")


@admin.register(Need)
class NeedAdmin(PatientRestrictedAdmin):
    patient_path = "care_plan__patient"
    list_display = ("description", "care_plan", "domain", "category", "status")


@admin.register(Activity)
class ActivityAdmin(PatientRestrictedAdmin):
    patient_path = "care_plan__patient"
    list_display = ("title", "care_plan", "owner_discipline", "status", "due_date")
