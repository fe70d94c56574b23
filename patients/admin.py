from django.contrib import admin

from careteam.admin import PatientRestrictedAdmin

from .models import Caregiver, Consent, Patient


@admin.register(Patient)
class PatientAdmin(PatientRestrictedAdmin):
    patient_path = "pk"
    list_display = ("mrn", "family_name", "given_name", "birth_date", "status")
    search_fields = ("=mrn", "family_name", "given_name")
    list_filter = ("status",)


@admin.register(Caregiver)
class CaregiverAdmin(PatientRestrictedAdmin):
    list_display = ("name", "relationship", "patient", "may_receive_information")


@admin.register(Consent)
class ConsentAdmin(PatientRestrictedAdmin):
    list_display = ("patient", "scope", "status", "date_given", "expires_on")
