from django.conf import settings
from django.core.management.base import BaseCommand

from explainer.services import outbox_sweep, traces_reconcile


class Command(BaseCommand):
    help = "Publish unpublished outbox rows and start a new run for traces stuck in queued/running."

    def add_arguments(self, parser):
        parser.add_argument("--deadline", type=int, default=settings.RECONCILE_DEADLINE_S,
                            help="seconds without progress before a trace counts as stuck")

    def handle(self, *args, deadline: int, **options):
        published = outbox_sweep(older_than_s=0)
        restarted = traces_reconcile(deadline_s=deadline)
        self.stdout.write(f"published {published} outbox rows; restarted {len(restarted)} stuck traces")
        for trace in restarted:
            self.stdout.write(f"  restarted {trace.tenant.slug}/{trace.trace_id}")
