"""The care-plan part of the REST API (/api/v1/care-plans/, /goals/, /needs/,
/activities/, /notes/): serializers, filters and viewsets on the shared bases of
`careteam.api`."""
