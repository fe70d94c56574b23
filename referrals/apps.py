from django.apps import AppConfig


class ReferralsConfig(AppConfig):
    default_auto_field = "django.db.models.BigAutoField"
    name = "referrals"

    def ready(self) -> None:
        # partner staff set their own services' capacity, and are reminded of referrals
        # waiting for their answer by the sweep
        from careteam import reminders

        from . import partners, reminder_rules, services

        if partners.is_partner_of_service not in services.CAPACITY_EDITORS:
            services.CAPACITY_EDITORS.append(partners.is_partner_of_service)
        for rule in reminder_rules.RULES:
            reminders.register_rule(rule)
