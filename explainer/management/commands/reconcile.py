from django.core.management.base import BaseCommand

from explainer.services import traces_sweep


class Command(BaseCommand):
    help = ("Sweep now, as every worker does every SWEEP_INTERVAL_S: publish again each due stage whose lease "
            "expired (a lost message, a killed worker) and fail traces whose stage kept dying.")

    def handle(self, *args, **options):
        result = traces_sweep()
        self.stdout.write(f"re-published {len(result.republished)} stages; failed {len(result.failed)} traces")
