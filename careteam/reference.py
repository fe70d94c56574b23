"""Reference data every installation has: the disciplines and the sensitive categories
with their default access policy (administrators can change the policy afterwards)."""

DISCIPLINES = [
    ("physician", "Physician"),
    ("nursing", "Nursing"),
    ("case-management", "Case management"),
    ("social-work", "Social work"),
    ("pharmacy", "Pharmacy"),
    ("physical-therapy", "Physical therapy"),
    ("occupational-therapy", "Occupational therapy"),
    ("dietetics", "Dietetics"),
    ("behavioural-health", "Behavioural health"),
    ("home-health", "Home health"),
]

# code, name, disciplines allowed by default (the patient's case manager always sees them)
SENSITIVITY_CATEGORIES = [
    ("behavioural-health", "Behavioural health", ["behavioural-health", "physician"]),
    ("substance-use", "Substance use", ["behavioural-health", "physician"]),
    ("sexual-reproductive-health", "Sexual and reproductive health", ["physician", "nursing"]),
    ("hiv", "HIV", ["physician", "pharmacy"]),
    ("domestic-violence", "Domestic violence", ["social-work", "behavioural-health"]),
]


def ensure_reference_data(apps=None) -> None:
    """Create the disciplines and sensitivity categories if missing. Idempotent; never
    overwrites an administrator's policy edits."""
    if apps is None:
        from careteam.models import Discipline, SensitivityCategory
    else:
        Discipline = apps.get_model("careteam", "Discipline")  # noqa: N806
        SensitivityCategory = apps.get_model("careteam", "SensitivityCategory")  # noqa: N806
    by_code = {}
    for code, name in DISCIPLINES:
        by_code[code], _ = Discipline.objects.get_or_create(code=code, defaults={"name": name})
    for code, name, allowed in SENSITIVITY_CATEGORIES:
        category, created = SensitivityCategory.objects.get_or_create(code=code, defaults={"name": name})
        if created:
            category.allowed_disciplines.set([by_code[c] for c in allowed])
