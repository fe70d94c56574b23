from django.apps import AppConfig


class PortalConfig(AppConfig):
    default_auto_field = "django.db.models.BigAutoField"
    name = "portal"
    verbose_name = "Patient and family portal"

    def ready(self) -> None:
        # the reminder sweep's rule for a patient's message nobody answered in time
        from careteam import reminders

        from . import reminder_rules

        reminders.register_rule(reminder_rules.UNANSWERED_MESSAGE)
