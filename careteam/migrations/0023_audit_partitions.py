from django.db import migrations

from careteam.audit_partitions import migrate_backward, migrate_forward


class Migration(migrations.Migration):
    """The audit table becomes partitioned by month (careteam/audit_partitions.py): rows
    copied, ids kept, indexes and append-only guards on the parent and every partition."""

    atomic = True
    dependencies = [("careteam", "0022_conversation_with_patient_message_to_patient_and_more")]

    operations = [migrations.RunPython(migrate_forward, migrate_backward)]
