"""factory-boy factories for every model; the graph builds itself from any starting point."""

import datetime as dt

import factory
from django.utils import timezone
from factory.django import DjangoModelFactory

from careplans.models import Activity, CarePlan, Goal, Need, Note
from careteam.models import Discipline, Handoff, SensitivityCategory, TeamMembership, User
from patients.models import Caregiver, Consent, Patient
from referrals.models import Organization, Referral, Service, TaxonomyTerm


def handoff_payload(*, patient, to_user, due_in: dt.timedelta = dt.timedelta(hours=4)) -> dict:
    """The body of a valid SBAR handoff for the API (POST /api/v1/handoffs/)."""
    return {
        "patient": patient.pk,
        "to_user": to_user.pk,
        "situation": "New insulin",
        "background": "Type 2 diabetes",
        "assessment": "Unsure of dose timing",
        "recommendation": "Review the regimen",
        "due_at": (timezone.now() + due_in).isoformat(),
    }


def discipline(code: str) -> Discipline:
    return Discipline.objects.get_or_create(code=code, defaults={"name": code.replace("-", " ").title()})[0]


class UserFactory(DjangoModelFactory):
    class Meta:
        model = User
        django_get_or_create = ("username",)
        skip_postgeneration_save = True

    username = factory.Sequence(lambda n: f"user{n}")
    first_name = factory.Faker("first_name")
    last_name = factory.Faker("last_name")
    email = factory.LazyAttribute(lambda u: f"{u.username}@example.org")
    password = factory.PostGenerationMethodCall("set_password", "correct-horse-battery-staple")

    @factory.post_generation
    def disciplines(self, create, extracted, **kwargs):
        if create and extracted:
            self.disciplines.set([discipline(c) if isinstance(c, str) else c for c in extracted])
        if create:
            self.save()


class PatientFactory(DjangoModelFactory):
    class Meta:
        model = Patient

    mrn = factory.Sequence(lambda n: f"MRN{n:07d}")
    given_name = factory.Faker("first_name")
    family_name = factory.Faker("last_name")
    birth_date = factory.Faker("date_of_birth", minimum_age=18, maximum_age=95)
    preferred_language = "en"


class CaregiverFactory(DjangoModelFactory):
    class Meta:
        model = Caregiver

    patient = factory.SubFactory(PatientFactory)
    name = factory.Faker("name")
    relationship = "child"


class ConsentFactory(DjangoModelFactory):
    class Meta:
        model = Consent

    patient = factory.SubFactory(PatientFactory)
    scope = "referral"
    status = "active"
    date_given = factory.LazyFunction(lambda: timezone.localdate() - dt.timedelta(days=1))


class TeamMembershipFactory(DjangoModelFactory):
    """Use careteam.services.membership_add in tests that need the permissions granted."""

    class Meta:
        model = TeamMembership

    patient = factory.SubFactory(PatientFactory)
    user = factory.SubFactory(UserFactory)
    discipline = factory.LazyFunction(lambda: discipline("nursing"))
    role = "member"
    status = "active"
    start_date = factory.LazyFunction(lambda: timezone.localdate() - dt.timedelta(days=7))


class CarePlanFactory(DjangoModelFactory):
    class Meta:
        model = CarePlan

    patient = factory.SubFactory(PatientFactory)
    title = factory.Sequence(lambda n: f"Care plan {n}")
    status = "active"


class GoalFactory(DjangoModelFactory):
    class Meta:
        model = Goal

    care_plan = factory.SubFactory(CarePlanFactory)
    description = factory.Sequence(lambda n: f"Goal {n}")
    lifecycle_status = "active"


class NeedFactory(DjangoModelFactory):
    class Meta:
        model = Need

    care_plan = factory.SubFactory(CarePlanFactory)
    domain = "social"
    category = "transportation"
    description = factory.Sequence(lambda n: f"Need {n}")


class ActivityFactory(DjangoModelFactory):
    class Meta:
        model = Activity

    care_plan = factory.SubFactory(CarePlanFactory)
    title = factory.Sequence(lambda n: f"Activity {n}")
    owner_discipline = factory.LazyFunction(lambda: discipline("nursing"))
    status = "not-started"


class NoteFactory(DjangoModelFactory):
    """An open proposal (with no changes) on a new goal of the plan."""

    class Meta:
        model = Note

    care_plan = factory.SubFactory(CarePlanFactory)
    goal = factory.SubFactory(GoalFactory, care_plan=factory.SelfAttribute("..care_plan"))
    kind = "proposal"
    status = "open"
    text = factory.Sequence(lambda n: f"Proposal {n}")
    author = factory.SubFactory(UserFactory)
    target_version = 1


class HandoffFactory(DjangoModelFactory):
    class Meta:
        model = Handoff

    patient = factory.SubFactory(PatientFactory)
    from_user = factory.SubFactory(UserFactory)
    to_user = factory.SubFactory(UserFactory)
    situation = "Situation"
    background = "Background"
    assessment = "Assessment"
    recommendation = "Recommendation"
    due_at = factory.LazyFunction(lambda: timezone.now() + dt.timedelta(hours=24))


class SensitivityCategoryFactory(DjangoModelFactory):
    class Meta:
        model = SensitivityCategory
        django_get_or_create = ("code",)

    code = factory.Sequence(lambda n: f"sensitive-{n}")
    name = factory.LazyAttribute(lambda s: s.code.title())


class TaxonomyTermFactory(DjangoModelFactory):
    class Meta:
        model = TaxonomyTerm
        django_get_or_create = ("code",)

    code = factory.Sequence(lambda n: f"category-{n}")
    name = factory.LazyAttribute(lambda t: t.code.title())


class OrganizationFactory(DjangoModelFactory):
    class Meta:
        model = Organization

    name = factory.Faker("company")


class ServiceFactory(DjangoModelFactory):
    class Meta:
        model = Service

    organization = factory.SubFactory(OrganizationFactory)
    name = factory.Sequence(lambda n: f"Service {n}")
    description = "Community service"
    status = "active"
    languages = factory.LazyFunction(lambda: ["en"])


class ReferralFactory(DjangoModelFactory):
    class Meta:
        model = Referral

    patient = factory.SubFactory(PatientFactory)
    care_plan = factory.SubFactory(CarePlanFactory, patient=factory.SelfAttribute("..patient"))
    service = factory.SubFactory(ServiceFactory)
    referred_by = factory.SubFactory(UserFactory)
    reason = "Needs help"
    status = "draft"


# ---------------------------------------------------------------------------
# Visits and service authorisations
# ---------------------------------------------------------------------------
class AuthorisationFactory(DjangoModelFactory):
    class Meta:
        model = "visits.Authorisation"

    patient = factory.SubFactory(PatientFactory)
    payer = "Acme Health Plan"
    service = "Physiotherapy at home"
    discipline = factory.LazyFunction(lambda: discipline("physical-therapy"))
    units_authorised = 6
    start_date = factory.LazyFunction(lambda: timezone.localdate() - dt.timedelta(days=7))
    end_date = factory.LazyFunction(lambda: timezone.localdate() + dt.timedelta(days=60))
    status = "approved"
    created_by = factory.SubFactory(UserFactory)


class VisitFactory(DjangoModelFactory):
    class Meta:
        model = "visits.Visit"

    patient = factory.SubFactory(PatientFactory)
    visit_type = "home"
    clinician = factory.SubFactory(UserFactory)
    start = factory.LazyFunction(
        lambda: timezone.now().replace(minute=0, second=0, microsecond=0) + dt.timedelta(days=1)
    )
    duration_minutes = 60
    time_zone = "UTC"
    location = "12 High Street"
    created_by = factory.SelfAttribute("clinician")


def partner_user(organization, username: str, **extra):
    """A partner account (User.kind "partner") on an organisation's staff."""
    from referrals.models import PartnerStaff

    user = UserFactory(username=username, kind="partner", **extra)
    PartnerStaff.objects.get_or_create(user=user, defaults={"organization": organization})
    return user
