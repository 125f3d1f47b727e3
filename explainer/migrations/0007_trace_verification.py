from django.db import migrations, models


class Migration(migrations.Migration):

    dependencies = [
        ('explainer', '0006_storage'),
    ]

    operations = [
        migrations.AddField(
            model_name='trace',
            name='verification',
            field=models.JSONField(blank=True, default=dict),
        ),
    ]
