from django.db import migrations, models


class Migration(migrations.Migration):

    dependencies = [
        ("explainer", "0008_audit"),
    ]

    operations = [
        migrations.AddField(
            model_name="trace",
            name="backpressure_level",
            field=models.CharField(blank=True, max_length=8),
        ),
        migrations.AddField(
            model_name="trace",
            name="degraded",
            field=models.JSONField(blank=True, null=True),
        ),
        migrations.AlterField(
            model_name="trace",
            name="status",
            field=models.CharField(choices=[("open", "Open"), ("queued", "Queued"), ("running", "Running"),
                                            ("complete", "Complete"), ("failed", "Failed"), ("canceled", "Canceled"),
                                            ("expired", "Expired"), ("shed", "Shed")],
                                   default="open", max_length=16),
        ),
    ]
