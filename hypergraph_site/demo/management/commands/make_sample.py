from pathlib import Path

from django.conf import settings
from django.core.management.base import BaseCommand

from hypergraph_site.demo.samples import write_sample


class Command(BaseCommand):
    help = "Generate the seeded sample dictionary (under DICT_ROOT/sample) and sample trace events (JSONL)."

    def add_arguments(self, parser):
        parser.add_argument("--out", default=str(Path(settings.BASE_DIR) / "var" / "samples" / "sample_traces.jsonl"))
        parser.add_argument("--seed", type=int, default=0)

    def handle(self, *args, out: str, seed: int, **options):
        folder, traces = write_sample(Path(settings.DICT_ROOT), Path(out), seed=seed)
        self.stdout.write(f"dictionary: {folder}\ntraces: {traces}")
