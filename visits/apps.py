from django.apps import AppConfig


class VisitsConfig(AppConfig):
    default_auto_field = "django.db.models.BigAutoField"
    name = "visits"
    verbose_name = "Visits and service authorisations"

    def ready(self) -> None:
        # the reminder sweep's rules for visits and authorisations, its step that expires
        # authorisations past their end date, and the receiver that
        # runs the hand-on rules when another app reports an event; their firings go on
        # the plan history
        from careplans import selectors as plan_selectors
        from careteam import events, reminders

        from . import reminder_rules, rules, selectors, services

        for rule in reminder_rules.RULES:
            reminders.register_rule(rule)
        reminders.register_step("authorisations-expired", services.authorisations_expire)
        events.work_event.connect(rules.on_work_event, dispatch_uid="visits.rules")
        plan_selectors.register_history_source(selectors.firing_history_entries)
