from django.core.management.base import BaseCommand
from django.utils import timezone
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from explainer.selectors import traces_past_retention
from explainer.services import traces_delete


class Command(BaseCommand):
    help = ("Delete traces older than their tenant's retention (Tenant.retention_days, else RETENTION_DAYS; 0 keeps "
            "them) with their events, graph documents, stage artifacts and capture shards, in batches.")

    def add_arguments(self, parser):
        parser.add_argument("--batch-size", type=int, default=200, help="traces deleted per batch (default 200)")
        parser.add_argument("--dry-run", action="store_true", help="count what would be deleted, delete nothing")

    def handle(self, *args, batch_size: int, dry_run: bool, **options):
        console = Console(stderr=True)
        now = timezone.now()  # one cutoff for the whole run: traces aging past it meanwhile wait for the next
        total = traces_past_retention(now=now).count()
        if dry_run or not total:
            self.stdout.write(f"{total} traces past retention{' (dry run: none deleted)' if dry_run else ''}")
            return
        deleted = 0
        columns = (TextColumn("purging"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn())
        with Progress(*columns, console=console) as progress:
            task = progress.add_task("purge", total=total)
            while batch := list(traces_past_retention(now=now).values_list("pk", flat=True)[:batch_size]):
                deleted += traces_delete(trace_pks=batch)
                progress.update(task, completed=min(deleted, total))
        self.stdout.write(f"deleted {deleted} traces past retention")
