"""Expected access for every URL name: the permission matrix test reads this table and
fails for any URL that has no rule here, so a new page cannot ship without one.

URL keyword arguments follow one convention so the matrix can fill them with objects
inside and outside the caller's team: patient_id, plan_id, goal_id, need_id,
activity_id, note_id, consent_id, membership_id, handoff_id, referral_id, visit_id,
authorisation_id, service_id, organization_id, notification_id, screening_id, feed_token,
conversation_id, message_id, huddle_id (and `pk` is not used for patient data).

Rule vocabulary (tests/test_permission_matrix.py asserts exactly this, for every role:
anonymous, admin (superuser not on the team), outsider clinician, former member (end
date passed), future member (start date ahead), emergency access clinician (nursing), and
team members: nurse (owns the items), pharmacist, behavioural-health clinician, case
manager, plan lead (physician)). "Denied" for patient data is always 404, never 403.
  "public"          anyone, signed in or not (login, health): never 5xx
  "login"           any signed-in user (worklist, search, inbox, emergency access form);
                    anonymous is sent to login. Shows no patient the caller may not see
                    and no sensitive item the caller's discipline may not see.
  "self"            the caller's own objects (notification_id): own 200, another's 404
  "patient-read"    patient data, read: team members 200; emergency access 200; everyone
                    else 404. Sensitive items (need_id/activity_id/note_id in a category)
                    200 only for allowed disciplines and the case manager.
  "patient-write"   any current team member may (add a need, goal, note, proposal,
                    handoff, referral): GET as patient-read (emergency access may get 403);
                    POST with empty data: members get a form error or redirect, never a
                    write by anyone denied; emergency access 403; everyone else 404.
  "item-write"      changes an existing item: as patient-write, but members of another
                    discipline than the item's owner_discipline get 403 on POST (case
                    manager and lead may edit anything; items without an owner: any member)
  "reconcile"       sign a medication reconciliation: as patient-write, but only members
                    of a discipline the reconciliation policy allows (pharmacy by
                    default) may POST; other members 403
  "team-manage"     assign/end roles: case manager and lead only; other members and
                    emergency access 403; everyone else 404
  "author-write"    changes a message: as patient-write, but only its author's POST may
                    succeed (other members 403, also on GET)
  "team-leave"      end a role: as team-manage, except that the role's own holder may
                    end it (leaving the team)
  "huddle-read"     a huddle (and a patient's huddles): the patient's current team
                    members 200; everyone else, emergency access included, 404
  "huddle-answer"   an invited member's update: as huddle-read, but only invited members
                    (the team but the case manager who started it) may post; the case
                    manager 403
  "huddle-manage"   start or close a huddle: as huddle-read, but only the case manager
                    may post; other members 403
  "patient-audit"   a patient's access log: that patient's case manager and lead only;
                    everyone else 404 (other members included)
  "catalog-admin"   catalog administration: users with careteam.manage_catalog only;
                    others 403 (or 404)
  "audit-admin"     audit search: users with careteam.view_audit_log only; others 403/404
  "superuser"       operator pages (/metrics): staff superusers 200; everyone else,
                    anonymous included, 404
  "admin-site"      Django admin (has its own permission checks; tested separately)
  "feed"            a secret calendar address (no session): an unknown or revoked secret
                    is 404 for everyone (tests/test_visits.py proves a live one)
  "portal"          the patient and family portal (/portal/): patients and caregivers
                    only; tested with their own personas (patient, caregiver, former
                    caregiver, another patient, staff) by tests/test_portal.py
  "partner"         the partner pages (/partner/): the partner of the organisation behind
                    the referral or service 200 (POST: a form error or the change);
                    a partner of another organisation and every staff account 404;
                    anonymous to login. Partner accounts get 404 on every URL outside
                    settings.ACCOUNT_KIND_PATHS["partner"] and the account pages, whatever
                    its rule (the partner personas of the matrix check it).
  "api"             REST/FHIR endpoint; tested by the API's own matrix (see test_api_*).
                    Every route under PREFIX_RULES' prefixes gets that rule by default.
"""

# Routes under these prefixes take this rule unless RULES names them (the API is
# tested by its own matrix; the admin site separately).
PREFIX_RULES: dict[str, str] = {"api/": "api", "fhir/": "api", "admin/": "admin-site", "portal/": "portal"}

RULES: dict[str, str] = {
    "home": "public",
    "health": "public",
    "healthz": "public",
    "readyz": "public",
    # Prometheus metrics: superusers (or the METRICS_TOKEN bearer), everyone else 404
    "metrics": "superuser",
    "login": "public",
    "logout": "login",
    # two-factor sign-in: the code and enrolment pages serve a pending sign-in (anyone
    # else is sent back to the sign-in page); the settings page is the caller's own
    "two_factor_verify": "public",
    "two_factor_setup": "public",
    "two_factor": "login",
    # the caller's own time zone and end-of-day digest
    "account_settings": "login",
    # security (emergency access and audit)
    "security:emergency_access": "login",
    "security:patient_access_log": "patient-audit",
    "security:audit_log": "audit-admin",
    "security:emergency_access_report": "audit-admin",
    # clinicians' pages: worklist, chart, team tools, the plan editor and its history
    "worklist": "login",
    "patient_new": "login",
    "my_work": "login",
    "patient_chart": "patient-read",
    "patient_edit": "patient-write",
    "patient_caregivers": "patient-write",
    "patient_consents": "patient-write",
    "patient_consent_revoke": "patient-write",
    "patient_consent_document": "patient-read",
    "team_role_add": "team-manage",
    "team_role_end": "team-leave",
    "careplans:plan_editor": "patient-read",
    "careplans:plan_history": "patient-read",
    "careplans:plan_print": "patient-read",
    "careplans:plan_pdf": "patient-read",
    "careplans:plan_edit": "patient-write",
    "plan_create": "patient-write",
    "careplans:goal_create": "patient-write",
    "careplans:need_create": "patient-write",
    "careplans:activity_create": "patient-write",
    "careplans:note_create": "patient-write",
    "careplans:goal_detail": "patient-read",
    "careplans:need_detail": "patient-read",
    "careplans:activity_detail": "patient-read",
    "careplans:goal_edit": "item-write",
    "careplans:need_edit": "item-write",
    "careplans:activity_edit": "item-write",
    "careplans:goal_status": "item-write",
    "careplans:need_status": "item-write",
    "careplans:activity_status": "item-write",
    # proposing a change: any member; accepting or declining it: whoever may edit the item
    "careplans:goal_propose": "patient-write",
    "careplans:need_propose": "patient-write",
    "careplans:activity_propose": "patient-write",
    "careplans:note_accept": "item-write",
    "careplans:note_decline": "item-write",
    # screening (sensitive instruments hidden like sensitive items) and plan templates
    # (preview for every member, apply by the case manager and the plan lead)
    "careplans:screening_start": "patient-write",
    # ask the patient to answer a questionnaire in the portal, or withdraw the request
    "careplans:screening_assign": "patient-write",
    "careplans:screening_detail": "patient-write",
    "careplans:screening_proposals": "patient-write",
    "careplans:plan_templates": "team-manage",
    # community referrals: catalog search, referrals from a plan or need, lifecycle,
    # the turnaround dashboard (scoped to visible patients), HSDS import/export
    "referrals:list": "login",
    "referrals:service_list": "login",
    "referrals:service_detail": "login",
    "referrals:new": "patient-write",
    "referrals:new_for_need": "patient-write",
    "referrals:detail": "patient-read",
    "referrals:status": "patient-write",
    "referrals:dashboard": "login",
    "referrals:dashboard_services": "login",
    "referrals:dashboard_organizations": "login",
    "referrals:catalog_import": "catalog-admin",
    "referrals:catalog_export": "catalog-admin",
    # care transitions and medications (transitions app): the dashboard counts only the
    # caller's own team patients; reconciling is for pharmacy (or what the policy allows)
    "transitions:dashboard": "login",
    "transitions:patient_transitions": "patient-write",
    "transitions:hospital_pauses": "patient-write",
    "transitions:transition_detail": "patient-read",
    "transitions:debrief": "patient-write",
    "transitions:step_done": "item-write",
    "transitions:medications": "patient-write",
    "transitions:reconcile": "reconcile",
    "transitions:medication_history": "patient-read",
    "transitions:schedule": "patient-read",
    "transitions:schedule_pdf": "patient-read",
    "transitions:api-transition-list": "api",
    "transitions:api-transition-detail": "api",
    "transitions:api-medication-line-list": "api",
    "transitions:fhir-encounter-search": "api",
    "transitions:fhir-encounter": "api",
    "transitions:fhir-medicationstatement-search": "api",
    "transitions:fhir-medicationstatement": "api",
    # capacity, the review of proposed listing changes and the stale listings
    "referrals:service_capacity": "catalog-admin",
    "referrals:listing_changes": "catalog-admin",
    "referrals:stale_listings": "catalog-admin",
    # partner organisations: the team's thread with the service, the emailed link, the
    # letter; the partner staff page; the partner's own pages; the invitation and the
    # emailed link (a secret: unknown is 404 for everyone); the claim of a listing
    "referrals:message": "patient-write",
    "referrals:link": "patient-write",
    "referrals:letter": "patient-read",
    "referrals:partner_staff": "catalog-admin",
    "partner:inbox": "partner",
    "partner:referral": "partner",
    "partner:accept": "partner",
    "partner:start": "partner",
    "partner:decline": "partner",
    "partner:complete": "partner",
    "partner:message": "partner",
    "partner:service": "partner",
    "partner:welcome": "feed",
    "partner:claim": "public",
    "partner:link": "feed",
    "partner:link_accept": "feed",
    "partner:link_decline": "feed",
    "partner:link_complete": "feed",
    # visits and service authorisations (visits/): calendars and the dashboard show only
    # visible patients; a visit or authorisation page follows its patient
    "visits:my_week": "login",
    "visits:team_week": "login",
    "visits:dashboard": "login",
    "visits:calendar_feed": "login",
    "visits:calendar_feed_ics": "feed",
    "visits:patient_visits": "patient-write",
    "visits:patient_authorisations": "patient-write",
    "visits:visit_detail": "patient-read",
    "visits:visit_status": "patient-write",
    "visits:visit_rebook": "patient-write",
    "visits:authorisation_detail": "patient-read",
    "visits:authorisation_status": "patient-write",
    "visits:authorisation_document_add": "patient-write",
    "visits:authorisation_document": "patient-read",
    # handoffs, the inbox and notifications
    "team:inbox": "login",
    "team:handoffs_sent": "login",
    "team:open_handoffs": "login",
    "team:handoff_create": "patient-write",
    "team:handoff_detail": "patient-write",
    "team:notification_detail": "self",
    # caseloads (own, or every case manager's counts for careteam.supervise_caseloads;
    # patient rows only of visible patients), bulk reassignment, cover while away
    "team:caseload": "login",
    "team:caseload_reassign": "login",
    "team:cover": "login",
    "patient_programmes": "patient-write",
    # conversations: a patient's list, a thread (GET reads, POST replies), its polled
    # messages; editing and retracting a message is its author's; the inbox tab
    "team:conversations": "login",
    "team:conversations_unread": "login",
    "conversations:patient_list": "patient-read",
    "conversations:new": "patient-write",
    "conversations:detail": "patient-write",
    "conversations:messages": "patient-read",
    "conversations:message_edit": "author-write",
    "conversations:message_retract": "author-write",
    "conversations:make_activity": "patient-write",
    # huddles: the patient's current team only; the case manager starts and closes one,
    # the invited members answer; starting one on each of my patients with changes
    "huddles:caseload": "login",
    "huddles:patient_list": "huddle-read",
    "huddles:new": "huddle-manage",
    "huddles:detail": "huddle-read",
    "huddles:answer": "huddle-answer",
    "huddles:close": "huddle-manage",
    # the patient portal's staff side: preview as patient, invitations (case manager and
    # lead), sharing one item with the patient (whoever may edit it)
    "portal_preview": "patient-read",
    "portal_invite": "team-manage",
    "portal_goal_share": "item-write",
    "portal_need_share": "item-write",
    "portal_activity_share": "item-write",
    # REST API v1, OpenAPI and FHIR R4 (tests/test_api_matrix.py covers their access)
    "api-activity-detail": "api",
    "api-activity-list": "api",
    "api-audit-event-detail": "api",
    "api-conversation-detail": "api",
    "api-conversation-list": "api",
    "api-conversation-messages": "api",
    "api-audit-event-list": "api",
    "api-authorisation-detail": "api",
    "api-authorisation-list": "api",
    "api-visit-detail": "api",
    "api-visit-list": "api",
    "api-care-plan-detail": "api",
    "api-care-plan-list": "api",
    "api-docs": "api",
    "api-goal-detail": "api",
    "api-goal-list": "api",
    "api-handoff-detail": "api",
    "api-handoff-list": "api",
    "api-need-detail": "api",
    "api-need-list": "api",
    "api-notification-detail": "api",
    "api-notification-list": "api",
    "api-notification-read": "api",
    "api-organization-detail": "api",
    "api-organization-list": "api",
    "api-patient-detail": "api",
    "api-patient-list": "api",
    "api-referral-detail": "api",
    "api-referral-list": "api",
    "api-root": "api",
    "api-schema": "api",
    "api-service-detail": "api",
    "api-service-list": "api",
    "api-team-membership-detail": "api",
    "api-team-membership-list": "api",
    "api-token": "api",
    "fhir-careplan": "api",
    "fhir-careplan-import": "api",
    "fhir-careplan-search": "api",
    "fhir-careteam": "api",
    "fhir-careteam-search": "api",
    "fhir-goal": "api",
    "fhir-goal-search": "api",
    "fhir-metadata": "api",
    "fhir-patient": "api",
    "fhir-patient-everything": "api",
    "fhir-patient-search": "api",
    "fhir-servicerequest": "api",
    "fhir-servicerequest-search": "api",
    "fhir-task": "api",
    "fhir-questionnaire": "api",
    "fhir-questionnaire-search": "api",
    "fhir-questionnaireresponse": "api",
    "fhir-questionnaireresponse-search": "api",
    "fhir-plandefinition": "api",
    "fhir-plandefinition-search": "api",
    "fhir-plandefinition-apply": "api",
    "fhir-task-search": "api",
    # the catalog as an HSDS 3.0 read API (no patient data; tests/test_hsds_api.py covers
    # its access: signed-in by default, public by HSDS_API_ACCESS)
    "hsds-root": "api",
    "hsds-service-list": "api",
    "hsds-service-detail": "api",
    "hsds-organization-list": "api",
    "hsds-organization-detail": "api",
    "hsds-service-at-location-list": "api",
    "hsds-service-at-location-detail": "api",
    "hsds-taxonomy-list": "api",
    "hsds-taxonomy-term-list": "api",
    "fhir-practitioner": "api",
    "fhir-practitioner-search": "api",
    "fhir-practitionerrole": "api",
    "fhir-practitionerrole-search": "api",
    # any other /fhir/ or /api/ URL: an OperationOutcome or JSON 404
    "fhir-not-found": "api",
    "api-not-found": "api",
}
