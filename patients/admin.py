from django.contrib import admin

from careteam.admin import PatientRestrictedAdmin

from .models import Caregiver, Consent, Patient, Programme, ProgrammeEnrolment


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


@admin.register(Programme)
class ProgrammeAdmin(admin.ModelAdmin):
    """Programmes are reference data: administrators add, rename and close them."""

    list_display = ("name", "code", "active")
    list_filter = ("active",)
    prepopulated_fields = {"code": ("name",)}


@admin.register(ProgrammeEnrolment)
class ProgrammeEnrolmentAdmin(PatientRestrictedAdmin):
    list_display = ("patient", "programme", "entered_on", "exited_on", "exit_reason")
