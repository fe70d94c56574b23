from django.db import migrations


def seed(apps, schema_editor):
    from careteam.reference import ensure_reference_data

    ensure_reference_data(apps)


AUDIT_GUARD = """
CREATE OR REPLACE FUNCTION careteam_audit_append_only() RETURNS trigger AS $$
BEGIN
    RAISE EXCEPTION 'audit events are append-only (% refused)', TG_OP
        USING ERRCODE = 'insufficient_privilege';
END;
$$ LANGUAGE plpgsql;
CREATE TRIGGER careteam_auditevent_append_only
    BEFORE UPDATE OR DELETE ON careteam_auditevent
    FOR EACH ROW EXECUTE FUNCTION careteam_audit_append_only();
"""
AUDIT_GUARD_REVERSE = """
DROP TRIGGER IF EXISTS careteam_auditevent_append_only ON careteam_auditevent;
DROP FUNCTION IF EXISTS careteam_audit_append_only();
"""


class Migration(migrations.Migration):
    dependencies = [("careteam", "0002_initial")]

    operations = [
        migrations.RunPython(seed, migrations.RunPython.noop),
        migrations.RunSQL(AUDIT_GUARD, AUDIT_GUARD_REVERSE),
    ]
