"""Indexes for the plan history's keyset pages: each table's newest versions of one plan
from (care_plan_id, history_date, history_id), and the version before each from (id,
history_date, history_id), both read backwards from the boundary. simple-history's own
single-column indexes made PostgreSQL walk every version of the item, or the whole
table's history_date index, to find them."""

from django.db import migrations

TABLES = {
    "careplans_historicalcareplan": ("id",),
    "careplans_historicalgoal": ("care_plan_id", "id"),
    "careplans_historicalneed": ("care_plan_id", "id"),
    "careplans_historicalactivity": ("care_plan_id", "id"),
}


def _operations():
    for table, leads in TABLES.items():
        for lead in leads:
            name = f"{table.removeprefix('careplans_')}_{lead.removesuffix('_id')}_keyset"[:63]
            yield migrations.RunSQL(
                f'CREATE INDEX IF NOT EXISTS "{name}" ON "{table}" ("{lead}", "history_date", "history_id")',
                reverse_sql=f'DROP INDEX IF EXISTS "{name}"',
            )


class Migration(migrations.Migration):
    dependencies = [("careplans", "0008_fhir_import_source")]

    operations = list(_operations())
