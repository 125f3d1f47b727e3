"""The demo's main job with the committed language model: generate answers with the capture hooks on, send them.

`models/pydoc-gpt2` (trained by `manage.py train_lm`) answers a few prompts about Python; `ingest.client`'s
`capture_and_send` records the residual stream of the layers the committed dictionary has
(`models/dicts/pydoc-gpt2/layer_<L>/`, with the model's unembedding, so attribution values are logits) and posts
completion, activations and finalize. The worker and web processes must use that dictionary, so the demo starts
them with `lm_service_env`: settings are read once per process, at its start.

Without torch and transformers (the `model` extra) or without the committed files, `lm_available` says why and the
demo falls back to the bundled sample.
"""
from __future__ import annotations

import importlib.util
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

LM_NAME = "pydoc-gpt2"
MAX_NEW_TOKENS = 40
# Greedy decoding of a model this small loops on a phrase; forbidding a repeated 3-gram keeps it deterministic
# without a sampling seed.
GENERATION = {"no_repeat_ngram_size": 3}
LM_PROMPTS = (
    ("lm-for-statement", "The for statement is used to"),
    ("lm-exceptions", "An exception is raised when"),
    ("lm-classes", "A class definition defines"),
    ("lm-import", "The import statement"),
)
LM_IDS = tuple(trace_id for trace_id, _ in LM_PROMPTS)


@dataclass(frozen=True)
class LanguageModel:
    folder: Path      # MODEL_ROOT/pydoc-gpt2
    dict_root: Path   # MODEL_ROOT/dicts
    layers: list[int]


def lm_available(model_root: Path) -> tuple[LanguageModel | None, str]:
    """The committed model and its dictionary layers, or None and the reason the demo uses the sample instead."""
    missing = [name for name in ("torch", "transformers") if importlib.util.find_spec(name) is None]
    if missing:
        return None, f"{' and '.join(missing)} not installed (the `model` extra)"
    folder, dict_root = Path(model_root) / LM_NAME, Path(model_root) / "dicts"
    if not (folder / "config.json").is_file():
        return None, f"no model in {folder} (manage.py train_lm)"
    layers = sorted(int(p.name.removeprefix("layer_")) for p in (dict_root / LM_NAME).glob("layer_*")
                    if (p / "cfg.json").is_file())
    if not layers:
        return None, f"no dictionary in {dict_root / LM_NAME} (manage.py train_sae --model {LM_NAME})"
    return LanguageModel(folder=folder, dict_root=dict_root, layers=layers), ""


def lm_service_env(lm: LanguageModel) -> dict[str, str]:
    """The settings the worker and web processes need for this model's traces: its dictionary, the model itself as
    the worker's shadow model (attribution through every later layer, verified by ablation), and no supernodes.

    Why no supernodes: `label_features` names a feature's namespace after the kind of token it fires on (Word,
    Punctuation, Keyword, ...), so grouping by namespace would fold some 350 features of a trace into six clusters,
    each joined to nearly every output token. Ungrouped, every feature is drawn with its own label and is joined
    only to the tokens it drives (about 30 per token of some 350 features).
    """
    return {"DICT_ROOT": str(lm.dict_root), "DICT_NAME": LM_NAME, "HG_GROUPING": "none",
            "SHADOW_MODEL": str(lm.folder)}


def lm_traces_send(lm: LanguageModel, trace_ids: list[str], *, base_url: str, api_key: str, redis_url: str,
                   echo: Callable[[str], None]) -> list[dict[str, Any]]:
    """Generate an answer to each prompt of `trace_ids` with capture on and send it; returns what was sent."""
    import transformers

    from explainer.management.pydoc_gpt2 import load_model
    from ingest.client import IngestClient, capture_and_send
    from ingest.hooks import CaptureConfig, CapturePipeline, RedisStore, model_hash

    transformers.logging.set_verbosity_error()  # its padding note does not apply: one unpadded prompt at a time
    tokenizer, model = load_model(lm.folder)
    cfg = CaptureConfig(LM_NAME, model_hash(model), layers=lm.layers, compress="f16-zstd")
    pipeline = CapturePipeline(cfg, store=RedisStore(redis_url, ttl_s=cfg.ttl_s))
    client = IngestClient(base_url, api_key)
    prompts = dict(LM_PROMPTS)
    sent = []
    try:
        for trace_id in trace_ids:
            result = capture_and_send(model, tokenizer, prompts[trace_id], client=client, trace_id=trace_id,
                                      layers=lm.layers, max_new_tokens=MAX_NEW_TOKENS, granularity="token",
                                      pipeline=pipeline, model_name=LM_NAME, generation=GENERATION)
            echo(f"  {trace_id}: {prompts[trace_id]!r} -> {result['text']!r}")
            sent.append(result)
    finally:
        pipeline.close()
    return sent
