"""`python manage.py train_sae`: train a TopK SAE on a model's residual stream (MiniLM-L6, or a causal LM from
`train_lm`) and save it under DICT_ROOT (SAELens format). The training is `sae.training`'s; the model and corpus are
bound in `explainer.management.minilm` and `explainer.management.pydoc_gpt2`. For a causal LM the layer folder also
gets the model's final norm and unembedding (`unembed.safetensors`), so attribution values are its logits."""

from __future__ import annotations

from pathlib import Path

from django.conf import settings
from django.core.management.base import BaseCommand, CommandParser

from sae.training import TrainConfig, train

from ..sources import MINILM, activation_source, model_folder


class Command(BaseCommand):
    help = "Train a TopK SAE on a model's activations over CPython's pydoc topics (offline, seeded)."

    def add_arguments(self, parser: CommandParser) -> None:
        d = TrainConfig()
        parser.add_argument("--model", default=MINILM, help=f"{MINILM} or a model folder under MODEL_ROOT, e.g. "
                                                             "pydoc-gpt2 (default %(default)s)")
        parser.add_argument("--name", default=None, help="dictionary name under DICT_ROOT (default: the model's)")
        parser.add_argument("--layer", type=int, default=d.layer, help="block whose output is read (default "
                                                                       "%(default)s)")
        parser.add_argument("--d-sae", type=int, default=d.d_sae)
        parser.add_argument("--k", type=int, default=d.k)
        parser.add_argument("--tokens", type=int, default=d.max_tokens, help="corpus tokens to capture")
        parser.add_argument("--steps", type=int, default=d.steps)
        parser.add_argument("--batch-size", type=int, default=d.batch_size)
        parser.add_argument("--lr", type=float, default=d.lr)
        parser.add_argument("--seed", type=int, default=d.seed)
        parser.add_argument("--dict-root", default=None, help="default: DICT_ROOT")
        parser.add_argument("--tiny", action="store_true", help="seconds-long configuration (tests, smoke runs)")
        parser.add_argument("--no-progress", action="store_true")

    def handle(self, *args: object, **opts: object) -> None:
        root = Path(opts["dict_root"] or settings.DICT_ROOT)
        source = activation_source(opts["model"])
        name = opts["name"] or opts["model"]
        fields = dict(name=name, layer=opts["layer"], d_sae=opts["d_sae"], k=opts["k"],
                      max_tokens=opts["tokens"], steps=opts["steps"], batch_size=opts["batch_size"], lr=opts["lr"],
                      seed=opts["seed"])
        if opts["tiny"]:
            cfg = TrainConfig.tiny(root, name=name, layer=opts["layer"], seed=opts["seed"])
        else:
            cfg = TrainConfig(dict_root=root, **fields)
        result = train(cfg, source, show_progress=not opts["no_progress"], echo=self.stdout.write)
        if opts["model"] != MINILM:
            from ..pydoc_gpt2 import write_unembedding

            path = write_unembedding(model_folder(opts["model"]), result.folder)
            self.stdout.write(f"wrote {path} (the model's final norm and unembedding)")
