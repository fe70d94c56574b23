"""The referrals part of the REST API (/api/v1/referrals/, /organizations/, /services/):
serializers, filters and viewsets on the shared bases of `careteam.api`."""
