"""Expected access for every URL name: the permission matrix test reads this table and
fails for any URL that has no rule here, so a new page cannot ship without one.

URL keyword arguments follow one convention so the matrix can fill them with objects
inside and outside the caller's team: patient_id, plan_id, goal_id, need_id,
activity_id, note_id, membership_id, handoff_id, referral_id, service_id,
organization_id, notification_id (and `pk` is not used for patient data).

Rule vocabulary (the matrix test defines exactly what each asserts):
  "public"         anyone, signed in or not (login, health)
  "login"          any signed-in user; shows no patient data of others
  "self"           the caller's own data only (inbox, notifications); others' ids 404
  "patient-read"   patient data, read: team members 200; break-the-glass 200; others 404
  "patient-write"  patient data, change: team members per item rules; break-the-glass 403;
                   others 404
  "catalog-admin"  catalog administration: catalog admins only, clinicians 403
  "audit-admin"    audit search: users with careteam.view_audit_log only
  "admin-site"     Django admin (has its own permission checks)
  "api"            REST/FHIR endpoint; tested by the API's own matrix (see test_api_*)
"""

RULES: dict[str, str] = {
    "home": "public",
    "health": "public",
    "login": "public",
    "logout": "login",
}
