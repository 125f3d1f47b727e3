"""The small generative model the product ships: a GPT-2 trained here, offline, on documentation CPython carries.

Why: MiniLM is an encoder without a language-model head, so graphs of its traces can only use the cosine value. A
causal LM with an unembedding gives real logits, and one small enough to train in minutes on two cores and to commit
(`models/pydoc-gpt2/`) lets the demo generate, capture and explain without any download.

Corpus (both ship with every CPython, so nothing is fetched): `pydoc_data.topics` (the language reference topics
`help()` shows, ~465 kB) and the docstrings of the standard library's modules, classes and functions, read with `ast`
from the `.py` files (never imported; test suites, IDLE, lib2to3, turtledemo and ensurepip left out; ~1.6 MB). A
document is one topic or one module; a seeded permutation of the documents holds `heldout_fraction` of them out, so
held-out perplexity measures text the model and its tokenizer never saw.

Tokenizer: byte-level BPE trained with `tokenizers` on the training documents, wrapped as a `PreTrainedTokenizerFast`
whose post-processor puts `<|endoftext|>` before every text, as in training, where each document starts with it.
`AutoTokenizer.from_pretrained(path)` loads it offline.

Layer numbering (as for every model here): layer L is the output of block `transformer.h[L]`, raw, which is what
`ingest.hooks` captures. Hugging Face's `hidden_states[L + 1]` is the same tensor except for the last block, where
it has `ln_f` applied already; so `capture` hooks the block instead of reading `hidden_states`.
"""
from __future__ import annotations

import ast
import json
import math
import os
import sysconfig
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from sae.training import ActivationSource, CaptureBatch, Corpus, corpus_collect

MODEL_NAME = "pydoc-gpt2"
EOS = "<|endoftext|>"
DATASET = "pydoc_data.topics + stdlib docstrings"
_SKIPPED_PARTS = frozenset({"test", "tests", "idle_test", "idlelib", "lib2to3", "turtledemo", "ensurepip",
                            "site-packages", "dist-packages", "__pycache__"})


@dataclass(frozen=True)
class LMConfig:
    """Sizes of the committed model (5-9 minutes on 2 shared cores); `tiny()` is the seconds-long test configuration."""

    name: str = MODEL_NAME
    vocab_size: int = 4096
    d_model: int = 128
    n_layer: int = 4
    n_head: int = 4
    seq_len: int = 128
    batch_size: int = 16
    steps: int = 500
    lr: float = 3e-3
    warmup: int = 60
    weight_decay: float = 0.05
    heldout_fraction: float = 0.05
    eval_tokens: int = 40_000
    stdlib_docstrings: bool = True
    max_documents: int | None = None
    seed: int = 0

    @classmethod
    def tiny(cls, **overrides: Any) -> LMConfig:
        base = dict(name="tiny-gpt2", vocab_size=384, d_model=32, n_layer=2, n_head=2, seq_len=32, batch_size=4,
                    steps=12, warmup=2, eval_tokens=2000, stdlib_docstrings=False, max_documents=24)
        base.update(overrides)
        return cls(**base)


@dataclass
class LMResult:
    folder: Path
    figures: dict[str, Any]


def pydoc_documents() -> list[tuple[str, str]]:
    """(topic, text) of `pydoc_data.topics`, sorted by topic."""
    from pydoc_data.topics import topics

    return [(topic, topics[topic].strip()) for topic in sorted(topics)]


def stdlib_documents() -> list[tuple[str, str]]:
    """(module, its docstrings) for the standard library's `.py` files, in path order, read with `ast` only."""
    root = Path(sysconfig.get_paths()["stdlib"])
    documents = []
    for path in sorted(root.rglob("*.py")):
        relative = path.relative_to(root)
        if _SKIPPED_PARTS & set(relative.parts):
            continue
        try:
            tree = ast.parse(path.read_text(encoding="utf-8"))
        except (SyntaxError, UnicodeDecodeError, ValueError):
            continue
        docstrings = [ast.get_docstring(node) for node in ast.walk(tree)
                      if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef))]
        text = "\n\n".join(d.strip() for d in docstrings if d and d.strip())
        if text:
            documents.append((".".join(relative.with_suffix("").parts), text))
    return documents


def corpus_split(cfg: LMConfig) -> tuple[list[tuple[str, str]], list[tuple[str, str]]]:
    """(training, held-out) documents: a permutation seeded by `cfg.seed` holds out `heldout_fraction` of them."""
    documents = pydoc_documents() + (stdlib_documents() if cfg.stdlib_docstrings else [])
    documents = documents[: cfg.max_documents]
    order = np.random.default_rng(cfg.seed).permutation(len(documents))
    n_heldout = max(1, round(len(documents) * cfg.heldout_fraction))
    heldout = sorted(int(i) for i in order[:n_heldout])
    training = sorted(int(i) for i in order[n_heldout:])
    return [documents[i] for i in training], [documents[i] for i in heldout]


def train_tokenizer(texts: list[str], vocab_size: int) -> Any:
    """Byte-level BPE over `texts` as a `PreTrainedTokenizerFast` that starts every text with `<|endoftext|>`."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers
    from transformers import PreTrainedTokenizerFast

    tokenizer = Tokenizer(models.BPE())
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, min_frequency=2, special_tokens=[EOS], show_progress=False,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    tokenizer.train_from_iterator(texts, trainer)
    tokenizer.post_processor = processors.TemplateProcessing(single=f"{EOS} $A", special_tokens=[(EOS, 0)])
    return PreTrainedTokenizerFast(tokenizer_object=tokenizer, bos_token=EOS, eos_token=EOS, unk_token=EOS,
                                   pad_token=EOS)


def token_stream(tokenizer: Any, texts: list[str]) -> np.ndarray:
    """All texts as one int64 id stream, each text starting with `<|endoftext|>` (the tokenizer adds it)."""
    ids = tokenizer(texts)["input_ids"]
    return np.concatenate([np.asarray(row, np.int64) for row in ids])


def unigram_perplexity(train_ids: np.ndarray, targets: np.ndarray, vocab_size: int) -> float:
    """Perplexity of `targets` under the training stream's add-one-smoothed unigram distribution: the baseline a
    language model must beat to have learnt anything about context."""
    counts = np.bincount(train_ids, minlength=vocab_size).astype(np.float64) + 1.0
    log_p = np.log(counts / counts.sum())
    return float(np.exp(-log_p[targets].mean()))


def _build_model(cfg: LMConfig, eos_id: int) -> Any:
    from transformers import GPT2Config, GPT2LMHeadModel

    config = GPT2Config(vocab_size=cfg.vocab_size, n_positions=max(256, cfg.seq_len + 1), n_embd=cfg.d_model,
                        n_layer=cfg.n_layer, n_head=cfg.n_head, resid_pdrop=0.0, embd_pdrop=0.0, attn_pdrop=0.0,
                        bos_token_id=eos_id, eos_token_id=eos_id, pad_token_id=eos_id)
    model = GPT2LMHeadModel(config)
    model.generation_config.pad_token_id = eos_id
    return model


def _windows(ids: np.ndarray, seq_len: int, limit: int) -> np.ndarray:
    """Non-overlapping `[n, seq_len + 1]` windows of the stream covering at most `limit` targets."""
    n = min((len(ids) - 1) // seq_len, max(1, limit // seq_len))
    return np.stack([ids[i * seq_len: i * seq_len + seq_len + 1] for i in range(n)])


def heldout_perplexity(model: Any, windows: np.ndarray, batch: int = 32) -> float:
    """exp(mean next-token cross-entropy) over every target of `windows` `[n, seq_len + 1]`."""
    import torch

    model.eval()
    total, count = 0.0, 0
    with torch.inference_mode():
        for start in range(0, len(windows), batch):
            part = torch.from_numpy(windows[start:start + batch])
            inputs = part[:, :-1]
            logits = model(inputs, attention_mask=torch.ones_like(inputs)).logits
            loss = torch.nn.functional.cross_entropy(logits.reshape(-1, logits.shape[-1]), part[:, 1:].reshape(-1),
                                                     reduction="sum")
            total += float(loss)
            count += part[:, 1:].numel()
    return math.exp(total / count)


def _lr_at(cfg: LMConfig, step: int) -> float:
    """Linear warm-up, then cosine decay to a tenth of the peak."""
    if step < cfg.warmup:
        return cfg.lr * (step + 1) / cfg.warmup
    progress = (step - cfg.warmup) / max(1, cfg.steps - cfg.warmup)
    return cfg.lr * (0.1 + 0.45 * (1 + math.cos(math.pi * progress)))


def _fit(model: Any, train_ids: np.ndarray, cfg: LMConfig, show_progress: bool) -> None:
    """AdamW (no weight decay on biases and norms) on random `seq_len + 1` windows of the training stream, drawn by a
    generator seeded with `cfg.seed`, with a rich progress bar showing the loss."""
    import torch
    from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

    decay = [p for p in model.parameters() if p.dim() >= 2]
    no_decay = [p for p in model.parameters() if p.dim() < 2]
    optimizer = torch.optim.AdamW([{"params": decay, "weight_decay": cfg.weight_decay},
                                   {"params": no_decay, "weight_decay": 0.0}], lr=cfg.lr, betas=(0.9, 0.95))
    generator = torch.Generator().manual_seed(cfg.seed)
    stream = torch.from_numpy(train_ids)
    offsets = torch.arange(cfg.seq_len + 1)
    model.train()
    with Progress(TextColumn("{task.description}"), BarColumn(), TextColumn("{task.completed}/{task.total}"),
                  TextColumn("{task.fields[info]}"), TimeElapsedColumn(), disable=not show_progress) as bar:
        task = bar.add_task(f"train {cfg.name} ({len(train_ids):,} tokens)", total=cfg.steps, info="")
        for step in range(cfg.steps):
            starts = torch.randint(0, len(stream) - cfg.seq_len - 1, (cfg.batch_size,), generator=generator)
            batch = stream[starts[:, None] + offsets]
            for group in optimizer.param_groups:
                group["lr"] = _lr_at(cfg, step)
            loss = model(batch, labels=batch).loss  # the model shifts labels: targets are batch[:, 1:]
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            optimizer.step()
            bar.update(task, completed=step + 1, info=f"loss {float(loss.detach()):.3f}")


def train_lm(cfg: LMConfig, model_root: Path, *, show_progress: bool = True,
             echo: Callable[[str], None] = print) -> LMResult:
    """Split the corpus, train the tokenizer and the model (seeded), measure held-out perplexity against the unigram
    baseline, and save model, tokenizer and `training.json` under `model_root/cfg.name`."""
    import torch
    import transformers

    transformers.logging.set_verbosity_error()  # its notes on padding and loss types do not apply to these batches
    started = time.perf_counter()
    torch.manual_seed(cfg.seed)
    torch.set_num_threads(max(1, os.cpu_count() or 1))
    training, heldout = corpus_split(cfg)
    tokenizer = train_tokenizer([text for _, text in training], cfg.vocab_size)
    train_ids = token_stream(tokenizer, [text for _, text in training])
    eval_windows = _windows(token_stream(tokenizer, [text for _, text in heldout]), cfg.seq_len, cfg.eval_tokens)
    model = _build_model(cfg, tokenizer.eos_token_id)
    _fit(model, train_ids, cfg, show_progress)
    train_seconds = time.perf_counter() - started
    ppl = heldout_perplexity(model, eval_windows)
    unigram = unigram_perplexity(train_ids, eval_windows[:, 1:].reshape(-1), cfg.vocab_size)
    folder = Path(model_root) / cfg.name
    model.save_pretrained(folder, safe_serialization=True)
    tokenizer.save_pretrained(folder)
    figures = {
        "model": cfg.name, "seed": cfg.seed, "steps": cfg.steps, "train_seconds": round(train_seconds, 1),
        "heldout_perplexity": round(ppl, 2), "unigram_perplexity": round(unigram, 2),
        "parameters": sum(p.numel() for p in model.parameters()), "config": asdict(cfg),
        "corpus": {"dataset": DATASET, "training_documents": len(training), "heldout_documents": len(heldout),
                   "heldout_names": [name for name, _ in heldout],
                   "training_chars": sum(len(t) for _, t in training), "heldout_chars": sum(len(t) for _, t in heldout),
                   "training_tokens": int(len(train_ids)), "heldout_tokens_scored": int(eval_windows[:, 1:].size)},
        "torch_threads": torch.get_num_threads(),
    }
    (folder / "training.json").write_text(json.dumps(figures, indent=2) + "\n")
    echo(f"trained {folder}: {figures['parameters']:,} parameters, {cfg.steps} steps in {train_seconds:.1f}s; "
         f"held-out perplexity {ppl:.2f} vs unigram {unigram:.2f} "
         f"({figures['corpus']['heldout_tokens_scored']:,} held-out tokens)")
    return LMResult(folder=folder, figures=figures)


def load_model(folder: Path | str) -> tuple[Any, Any]:
    """Tokenizer and model from a `train_lm` folder, offline (local files only), in eval mode."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(str(folder), local_files_only=True)
    model = AutoModelForCausalLM.from_pretrained(str(folder), local_files_only=True)
    model.eval()
    return tokenizer, model


def display_tokens(tokenizer: Any, ids: list[int]) -> list[str]:
    """Tokens as `sae.labeling` reads them (WordPiece-like): a token that starts a word without its leading space,
    one that continues a word as `##piece`, whitespace as `⏎` or `␣`. Byte-level pieces like `Ġfor` would otherwise
    all be classed as punctuation-led words and shown with their byte markers."""
    shown: list[str] = []
    previous = ""
    for text in (tokenizer.decode([i]) for i in ids):
        if not text.strip():
            shown.append("⏎" if "\n" in text else "␣")
        elif text[0].isspace():
            shown.append(text.strip())
        elif text[0].isalnum() and previous[-1:].isalnum():
            shown.append("##" + text.rstrip())
        else:
            shown.append(text.rstrip())
        previous = text
    return shown


def capture_chunks(heldout: set[str], max_chars: int = 600, seed: int = 0) -> list[tuple[str, str]]:
    """(topic, text) paragraphs of the pydoc topics the model trained on, grouped up to `max_chars`, in a seeded
    order so that a token budget samples every topic rather than the first ones alphabetically."""
    chunks: list[tuple[str, str]] = []
    for topic, text in pydoc_documents():
        if topic in heldout:
            continue
        current = ""
        for para in (p.strip("\n") for p in text.split("\n\n")):
            if not para.strip():
                continue
            if current and len(current) + len(para) > max_chars:
                chunks.append((topic, current))
                current = ""
            current = f"{current}\n\n{para}" if current else para
        if current:
            chunks.append((topic, current))
    order = np.random.default_rng(seed).permutation(len(chunks))
    return [chunks[i] for i in order]


def capture(folder: Path, layer: int, max_tokens: int, seq_len: int,
            progress: Callable[[int], None] | None = None, *, batch: int = 32) -> Corpus:
    """Layer `layer`'s block output over the training topics, every position but the leading `<|endoftext|>`
    (its activations are outliers a few times larger than any text token's and would dominate the loss)."""
    import torch

    tokenizer, model = load_model(folder)
    blocks = model.transformer.h
    if not 0 <= layer < len(blocks):
        raise ValueError(f"layer must be in [0, {len(blocks)}), got {layer}")
    heldout = set(json.loads((Path(folder) / "training.json").read_text())["corpus"]["heldout_names"])
    chunks = capture_chunks(heldout)
    docs = sorted({topic for topic, _ in chunks})
    doc_index = {d: i for i, d in enumerate(docs)}
    outputs: list[Any] = []
    hook = blocks[layer].register_forward_hook(  # transformers 5 returns the tensor, 4.x a tuple starting with it
        lambda module, args, output: outputs.append(output[0] if isinstance(output, tuple) else output))
    del blocks[layer + 1:]  # later blocks cannot change block `layer`'s output

    def batches() -> Iterator[CaptureBatch]:
        with torch.inference_mode():
            for start in range(0, len(chunks), batch):
                part = chunks[start:start + batch]
                enc = tokenizer([t for _, t in part], truncation=True, max_length=seq_len, padding=True,
                                return_tensors="pt")
                outputs.clear()
                model(input_ids=enc["input_ids"], attention_mask=enc["attention_mask"])
                keep = enc["attention_mask"].bool()
                keep[:, 0] = False
                rows, cols = torch.nonzero(keep, as_tuple=True)
                tokens = [t for r in range(len(part))
                          for t in display_tokens(tokenizer, enc["input_ids"][r][keep[r]].tolist())]
                yield (outputs[0][keep].float().numpy(), tokens,
                       np.array([doc_index[part[r][0]] for r in rows.tolist()], np.int32),
                       cols.numpy().astype(np.int32), (rows.numpy() + start).astype(np.int32))

    try:
        return corpus_collect(batches(), docs, max_tokens, progress)
    finally:
        hook.remove()


def activation_source(folder: Path) -> ActivationSource:
    """`train_sae`/`label_features`' binding of the model in `folder` and its training topics."""
    return ActivationSource(model_name=Path(folder).name, dataset="pydoc_data.topics",
                            hook_name=lambda layer: f"transformer.h.{layer}", convention="hf_raw",
                            capture=lambda *args: capture(Path(folder), *args))


def write_unembedding(folder: Path, layer_folder: Path) -> Path:
    """`unembed.safetensors` for `attribution.load_unembedding`: `W_U [d_model, vocab]` (the tied `lm_head`),
    `ln_f_weight`, `ln_f_bias`, and the norm's epsilon as metadata, so attribution values are the model's logits."""
    from safetensors.numpy import save_file

    _, model = load_model(folder)
    ln_f = model.transformer.ln_f
    tensors = {"W_U": np.ascontiguousarray(model.lm_head.weight.detach().numpy().T, np.float32),
               "ln_f_weight": ln_f.weight.detach().numpy().astype(np.float32),
               "ln_f_bias": ln_f.bias.detach().numpy().astype(np.float32)}
    path = Path(layer_folder) / "unembed.safetensors"
    save_file(tensors, str(path), metadata={"eps": repr(float(ln_f.eps)), "model_name": Path(folder).name})
    return path
