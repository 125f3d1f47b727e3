"""`python manage.py train_lm`: train the small GPT-2 the demo runs (tokenizer and model, seeded, offline) and save
it under MODEL_ROOT. The training is `explainer.management.pydoc_gpt2`'s."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

from django.conf import settings
from django.core.management.base import BaseCommand, CommandParser

from ..pydoc_gpt2 import LMConfig, train_lm


class Command(BaseCommand):
    help = ("Train a small GPT-2 (byte-level BPE tokenizer + causal LM) on CPython's pydoc topics and stdlib "
            "docstrings, offline and seeded; print held-out perplexity against a unigram baseline.")

    def add_arguments(self, parser: CommandParser) -> None:
        d = LMConfig()
        parser.add_argument("--name", default=None, help=f"folder under MODEL_ROOT (default {d.name}, or "
                                                           f"{LMConfig.tiny().name} with --tiny)")
        parser.add_argument("--vocab-size", type=int, default=d.vocab_size)
        parser.add_argument("--d-model", type=int, default=d.d_model)
        parser.add_argument("--layers", type=int, default=d.n_layer)
        parser.add_argument("--heads", type=int, default=d.n_head)
        parser.add_argument("--seq-len", type=int, default=d.seq_len)
        parser.add_argument("--batch-size", type=int, default=d.batch_size)
        parser.add_argument("--steps", type=int, default=d.steps)
        parser.add_argument("--lr", type=float, default=d.lr)
        parser.add_argument("--seed", type=int, default=d.seed)
        parser.add_argument("--model-root", default=None, help="default: MODEL_ROOT")
        parser.add_argument("--tiny", action="store_true", help="seconds-long configuration (tests, smoke runs)")
        parser.add_argument("--no-progress", action="store_true")

    def handle(self, *args: object, **opts: object) -> None:
        root = Path(opts["model_root"] or settings.MODEL_ROOT)
        if opts["tiny"]:
            cfg = LMConfig.tiny(seed=opts["seed"])
        else:
            cfg = LMConfig(vocab_size=opts["vocab_size"], d_model=opts["d_model"], n_layer=opts["layers"],
                           n_head=opts["heads"], seq_len=opts["seq_len"], batch_size=opts["batch_size"],
                           steps=opts["steps"], lr=opts["lr"], seed=opts["seed"])
        if opts["name"]:
            cfg = replace(cfg, name=opts["name"])
        train_lm(cfg, root, show_progress=not opts["no_progress"], echo=self.stdout.write)
