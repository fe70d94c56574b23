"""The portal end to end, in Chromium: the case manager invites the patient from the
chart; the patient opens the emailed link, sets a password, signs in and sees the plan
in Spanish (her preferred language), proposes a goal and writes to the team; the case
manager sees both."""

from __future__ import annotations

import re

import pytest
from django.core import mail
from playwright.sync_api import expect

from careplans.models import Goal
from careteam.models import Message

from .conftest import screenshot

pytestmark = pytest.mark.django_db(transaction=True)


def test_invitation_to_plan_in_spanish_to_goal_and_message(new_page, browser, live_server, clinic, settings):
    settings.EMAIL_BACKEND = "django.core.mail.backends.locmem.EmailBackend"
    world = clinic
    cm = new_page(world.case_manager)

    # the case manager invites the patient from the chart
    cm.goto(f"{live_server.url}/patients/{world.patient.pk}/")
    cm.get_by_role("link", name="Invite the patient or a caregiver").click()
    cm.get_by_label("Invite").select_option("patient")
    cm.get_by_label("Email address").fill("alice@example.org")
    cm.get_by_role("button", name="Send the invitation").click()
    expect(cm.locator("main")).to_contain_text("Invitation sent to alice@example.org")
    body = mail.outbox[-1].body
    link = re.search(r"https?://\S+/portal/welcome/\S+/", body).group(0)
    path = "/portal/" + link.split("/portal/", 1)[1]
    username = re.search(r"Your username is: (\S+)", body).group(1)

    # the patient sets a password through the one-time link: the page is in Spanish
    context = browser.new_context(viewport={"width": 1280, "height": 900}, locale="es-ES")
    context.set_default_timeout(10_000)
    page = context.new_page()
    page.goto(f"{live_server.url}{path}")
    expect(page.get_by_role("heading", level=1)).to_have_text("Bienvenido a CareTeam")
    page.get_by_label("Contraseña nueva", exact=True).fill("Walk-to-church-2026")
    page.get_by_label("Repita la contraseña nueva").fill("Walk-to-church-2026")
    page.get_by_role("button", name="Guardar mi contraseña").click()
    expect(page.get_by_role("heading", level=1)).to_have_text("Su contraseña está guardada")

    # sign in: the portal opens on her plan, in Spanish
    page.get_by_role("link", name="Iniciar sesión").click()
    page.get_by_label("Username").fill(username)
    page.get_by_label("Password").fill("Walk-to-church-2026")
    page.get_by_role("button", name="Sign in").click()
    page.wait_for_url(f"**/portal/{world.patient.pk}/")
    expect(page.get_by_role("heading", name="Mis metas")).to_be_visible()
    expect(page.locator("#team")).to_contain_text("Gestor de casos")
    screenshot(page, "portal-plan-es")

    # she proposes a goal in her own words
    page.get_by_role("link", name="Proponer una meta").click()
    page.get_by_label("Mi meta, en mis propias palabras").fill("Caminar hasta la iglesia los domingos")
    page.get_by_role("button", name="Enviar a mi equipo").click()
    expect(page.locator("#goals")).to_contain_text("Caminar hasta la iglesia los domingos")
    expect(page.locator("#goals")).to_contain_text("Esperando la aprobación de su equipo")

    # and asks the team
    page.get_by_role("link", name="Preguntar al equipo").click()
    page.get_by_label("Su mensaje para el equipo").fill("¿Puede venir la enfermera el viernes?")
    page.get_by_role("button", name="Enviar").click()
    expect(page.locator(".message-list")).to_contain_text("¿Puede venir la enfermera el viernes?")
    goal = Goal.objects.get(description="Caminar hasta la iglesia los domingos")
    assert goal.lifecycle_status == "proposed" and goal.expressed_by == "patient"
    message = Message.objects.get(text="¿Puede venir la enfermera el viernes?")

    # the case manager sees both: the proposed goal on the plan, the message in the thread
    cm.goto(f"{live_server.url}/plans/{world.plan.pk}/")
    expect(cm.locator("main")).to_contain_text("Caminar hasta la iglesia los domingos")
    cm.goto(f"{live_server.url}/patients/{world.patient.pk}/conversations/{message.conversation_id}/")
    expect(cm.locator("#messages")).to_contain_text("¿Puede venir la enfermera el viernes?")
    expect(cm.locator("#messages")).to_contain_text("patient")
    context.close()


def test_the_patient_answers_a_questionnaire_and_the_case_manager_sees_the_need(
    new_page, browser, live_server, clinic
):
    from careplans.models import ProposedNeed
    from tests import factories as f

    from .conftest import PASSWORD

    world = clinic
    patient_user = f.UserFactory(username="alice-portal", kind="patient", disciplines=[])
    world.patient.account = patient_user
    world.patient.save(update_fields=["account"])
    cm = new_page(world.case_manager)

    # the case manager asks her, from the chart, to answer the Hunger Vital Sign
    cm.goto(f"{live_server.url}/patients/{world.patient.pk}/")
    cm.get_by_role("link", name="Ask the patient to answer").click()
    cm.get_by_label("Ask the patient to answer").select_option(label="Hunger Vital Sign")
    cm.get_by_role("button", name="Ask the patient").click()
    expect(cm.locator(".messages")).to_contain_text("is waiting for the patient in the portal")

    # she signs in: the question is on her plan, in Spanish; she answers it
    context = browser.new_context(viewport={"width": 1280, "height": 900}, locale="es-ES")
    context.set_default_timeout(10_000)
    page = context.new_page()
    page.goto(f"{live_server.url}/accounts/login/")
    page.get_by_label("Username").fill(patient_user.username)
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Sign in").click()
    page.wait_for_url(f"**/portal/{world.patient.pk}/")
    expect(page.locator("#questions")).to_contain_text("Preguntas de su equipo")
    page.locator("#questions").get_by_role("link", name="Responder").click()
    page.locator('input[name="q-hvs-1"][value="LA28397-0"]').check()
    page.locator('input[name="q-hvs-2"][value="LA6729-3"]').check()
    page.get_by_role("button", name="Enviar mis respuestas").click()
    expect(page.locator("#answered")).to_contain_text("Gracias. Su equipo tiene sus respuestas.")
    screenshot(page, "portal-questionnaire-es")
    proposal = ProposedNeed.objects.get(response__patient=world.patient)
    assert proposal.status == "proposed" and proposal.category == "food"

    # the case manager sees the proposed need on the screening, and accepts it
    cm.goto(f"{live_server.url}/patients/{world.patient.pk}/")
    cm.get_by_role("link", name="Ask the patient to answer").click()
    cm.locator("#ask-h").locator("..").get_by_role("link", name=re.compile("answered")).click()
    expect(cm.locator("main")).to_contain_text("Food insecurity")
    expect(cm.locator("main")).to_contain_text("Answered by patient")
    context.close()
