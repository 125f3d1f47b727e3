"""Make the accept path's trace UPDATEs heap-only (HOT) on PostgreSQL.

An UPDATE that changes no indexed column, on a page with room for the new row version, writes no index entry. The
accept path updates a trace's summary and `updated` on every event, so: `updated` is no longer indexed (expiry finds
open traces through a partial index instead), the tenant foreign key loses its redundant index, and trace pages keep
20% free (fillfactor 80) for the new versions. Events lose the foreign key's index too: their (trace, event_hash)
constraint leads with the trace.
"""

import django.db.models.deletion
from django.db import migrations, models


def _fillfactor(percent: int):
    def apply(apps, schema_editor) -> None:
        if schema_editor.connection.vendor == "postgresql":
            schema_editor.execute(f"ALTER TABLE explainer_trace SET (fillfactor = {percent})")
    return apply


class Migration(migrations.Migration):

    dependencies = [
        ('explainer', '0004_staff_tenant'),
    ]

    operations = [
        migrations.RemoveIndex(
            model_name='trace',
            name='explainer_t_status_b72c63_idx',
        ),
        migrations.AlterField(
            model_name='trace',
            name='tenant',
            field=models.ForeignKey(db_index=False, on_delete=django.db.models.deletion.PROTECT, related_name='traces', to='explainer.tenant'),
        ),
        migrations.AddIndex(
            model_name='trace',
            index=models.Index(condition=models.Q(('status', 'open')), fields=['id'], name='trace_open'),
        ),
        migrations.AlterField(
            model_name='traceevent',
            name='trace',
            field=models.ForeignKey(db_index=False, on_delete=django.db.models.deletion.CASCADE, related_name='events', to='explainer.trace'),
        ),
        migrations.RunPython(_fillfactor(80), _fillfactor(100)),
    ]
