"""A tiny random-weight GPT-2 with a word-level tokenizer, saved as a transformers folder: the e2e worker's
SHADOW_MODEL. Random weights exercise the mechanics only; faithfulness is measured on the trained model
(`benchmarks/faithfulness_bench.py`)."""
from __future__ import annotations

from pathlib import Path

WORDS = ("the cells divide by mitosis and nucleus holds genome markets fell sharply today a model writes tokens "
         "hooks run beside every layer of residual stream features explain output graph").split()
LAYERS, WIDTH = 3, 48  # no other e2e test uses width 48, so their traces never match this model


def write_shadow_model(folder: Path) -> Path:
    """Write the model and its tokenizer under `folder` (seeded, so every run writes the same model)."""
    import torch
    import transformers
    from tokenizers import Tokenizer, models, pre_tokenizers

    vocab = {"[UNK]": 0, **{word: i + 1 for i, word in enumerate(dict.fromkeys(WORDS))}}
    backend = Tokenizer(models.WordLevel(vocab, unk_token="[UNK]"))
    backend.pre_tokenizer = pre_tokenizers.Whitespace()
    tokenizer = transformers.PreTrainedTokenizerFast(tokenizer_object=backend, unk_token="[UNK]")
    torch.manual_seed(0)
    config = transformers.GPT2Config(vocab_size=len(vocab), n_positions=64, n_embd=WIDTH, n_layer=LAYERS, n_head=2,
                                     initializer_range=0.2, bos_token_id=0, eos_token_id=0, pad_token_id=0)
    transformers.GPT2LMHeadModel(config).eval().save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder
