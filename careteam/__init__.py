"""The care-team app: the team domain (users, disciplines, memberships, handoffs,
notifications, reminders) and, for now, the access layer and the API of every app."""
