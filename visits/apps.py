from django.apps import AppConfig


class VisitsConfig(AppConfig):
    default_auto_field = "django.db.models.BigAutoField"
    name = "visits"
    verbose_name = "Visits and service authorisations"

    def ready(self) -> None:
        # the reminder sweep's rules for visits and authorisations, and the receiver that
        # runs the hand-on rules when another app reports an event
        from careteam import events, reminders

        from . import reminder_rules, rules

        for rule in reminder_rules.RULES:
            reminders.register_rule(rule)
        events.work_event.connect(rules.on_work_event, dispatch_uid="visits.rules")
