"""The demo's main job with the committed language model, in the real topology: client → model server → sidecar.

`models/pydoc-gpt2` (trained by `manage.py train_lm`) is served by `manage.py serve_model` (OpenAI-compatible, the
capture hooks on); the demo asks it a few questions about Python as any client would (`lm_traces_ask`). The server
records the residual stream of the layers the committed dictionary has (`models/dicts/pydoc-gpt2/layer_<L>/`, with
the model's unembedding, so attribution values are logits) and posts completion, activations and finalize to the
sidecar. The worker and web processes must use that dictionary, so the demo starts them with `lm_service_env`:
settings are read once per process, at its start.

Without torch and transformers (the `model` extra) or without the committed files, `lm_available` says why and the
demo falls back to the bundled sample.
"""
from __future__ import annotations

import importlib.util
import json
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

LM_NAME = "pydoc-gpt2"
MAX_NEW_TOKENS = 40
# Greedy decoding of a model this small loops on a phrase; a frequency penalty keeps it off its loops and
# deterministic without a sampling seed.
GENERATION = {"frequency_penalty": 1.0}
# Each names two things (code in backticks, a proper noun), so the concepts view has a group to search; short, so
# the answers' token windows fit the attribution budget on two cores.
LM_PROMPTS = (
    ("lm-for-statement", "The `for` loop over a `list`"),
    ("lm-exceptions", "A `KeyError` or `IndexError` is raised when"),
    ("lm-classes", "A `class` in the Python Tutorial"),
    ("lm-import", "The `import` of `os.path`"),
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
    layers = dictionary_layers(dict_root, LM_NAME)
    if not layers:
        return None, f"no dictionary in {dict_root / LM_NAME} (manage.py train_sae --model {LM_NAME})"
    return LanguageModel(folder=folder, dict_root=dict_root, layers=layers), ""


def dictionary_layers(dict_root: Path, model: str) -> list[int]:
    """The layers a model's dictionary set has (`dict_root/<model>/layer_<L>/cfg.json`)."""
    return sorted(int(p.name.removeprefix("layer_")) for p in (Path(dict_root) / model).glob("layer_*")
                  if (p / "cfg.json").is_file())


# The demo shows full work on two cores: its four traces run at once in one worker, each through the model (a
# backward pass per token window, ablations, the concept search), so each gets a fraction of a core. With the
# default budgets some windows would fall back to saliency, and with the default backlog limits every run after the
# first would be explained degraded. A demo is no overload: it gets the time the work takes.
DEMO_FULL_WORK = {"ATTR_TOKEN_BUDGET_MS": "30000", "BP_MAX_BACKLOG_TOKEN": "600", "BP_MAX_BACKLOG_SENTENCE": "600"}


def lm_service_env(lm: LanguageModel) -> dict[str, str]:
    """The settings the worker and web processes need for this model's traces: its dictionary, the model itself as
    the worker's shadow model (attribution through every later layer, verified by ablation), and no supernodes.

    Why no supernodes: `label_features` names a feature's namespace after the kind of token it fires on (Word,
    Punctuation, Keyword, ...), so grouping by namespace would fold some 350 features of a trace into six clusters,
    each joined to nearly every output token. Ungrouped, every feature is drawn with its own label and is joined
    only to the tokens it drives (about 30 per token of some 350 features). Its time budget and backlog limits are
    raised (`DEMO_FULL_WORK`).
    """
    return {"DICT_ROOT": str(lm.dict_root), "DICT_NAME": LM_NAME, "HG_GROUPING": "none",
            "SHADOW_MODEL": str(lm.folder), **DEMO_FULL_WORK}


def lm_traces_ask(server_url: str, trace_ids: list[str], *, echo: Callable[[str], None]) -> None:
    """Ask the model server (`manage.py serve_model`) each prompt of `trace_ids`, as any client of it would, under
    that trace id; the server captures its answer and sends it to the sidecar."""
    prompts = dict(LM_PROMPTS)
    for trace_id in trace_ids:
        body = {"prompt": prompts[trace_id], "max_tokens": MAX_NEW_TOKENS, **GENERATION}
        request = urllib.request.Request(f"{server_url}/v1/completions", data=json.dumps(body).encode(),
                                         headers={"Content-Type": "application/json", "X-Trace-Id": trace_id})
        with urllib.request.urlopen(request, timeout=120) as response:
            text = json.loads(response.read())["choices"][0]["text"]
        echo(f"  {trace_id}: {prompts[trace_id]!r} -> {text!r}")
