"""`python manage.py label_features`: label each feature of a trained dictionary from its top-activating contexts
(writes labels.json beside it). The labelling is `sae.labeling`'s; the model and corpus come from
`explainer.management.minilm` or `explainer.management.pydoc_gpt2` (`--model`)."""

from __future__ import annotations

from pathlib import Path

from django.conf import settings
from django.core.management.base import BaseCommand, CommandParser

from sae.labeling import LabelConfig, label_features

from ..sources import MINILM, activation_source


class Command(BaseCommand):
    help = "Write labels.json ('Namespace: detail' per feature) for a dictionary trained by train_sae."

    def add_arguments(self, parser: CommandParser) -> None:
        d = LabelConfig()
        parser.add_argument("--model", default=MINILM, help=f"{MINILM} or a model folder under MODEL_ROOT, e.g. "
                                                             "pydoc-gpt2 (default %(default)s)")
        parser.add_argument("--name", default=None, help="dictionary name under DICT_ROOT (default: the model's)")
        parser.add_argument("--layer", type=int, default=d.layer)
        parser.add_argument("--tokens", type=int, default=d.max_tokens, help="corpus tokens to scan")
        parser.add_argument("--top", type=int, default=d.top_contexts, help="contexts kept per feature")
        parser.add_argument("--dict-root", default=None, help="default: DICT_ROOT")
        parser.add_argument("--no-progress", action="store_true")

    def handle(self, *args: object, **opts: object) -> None:
        root = Path(opts["dict_root"] or settings.DICT_ROOT)
        cfg = LabelConfig(dict_root=root, name=opts["name"] or opts["model"], layer=opts["layer"],
                          max_tokens=opts["tokens"], top_contexts=opts["top"])
        label_features(cfg, activation_source(opts["model"]), show_progress=not opts["no_progress"],
                       echo=self.stdout.write)
