"""Faithfulness benchmark: do a graph's strongest incidences drive the model's output? Checked by ablation.

On the trained model (`models/pydoc-gpt2`) and its dictionaries (`models/dicts/pydoc-gpt2/layer_<L>`), for held-out
prompts (paragraphs of the documents `train_lm` held out, listed in the model's `training.json`): the model
continues each prompt greedily, the residual after each dictionary's block is encoded by the SAE (as the worker's
decode stage does), and the trace (prompt and completion, token granularity, as the capture client sends it) is
attributed three ways: through the model (`model`: gradient x activation with the SAE error kept), through the final
norm and unembedding (`logit`), and by cosine with the residual (`cosine`). Each graph is then verified by ablation on
the same model (`attribution.verify`, with a budget large enough that nothing is left unchecked) and the table prints,
per value: the mean Spearman correlation of predicted and observed effects over the top-16 incidences, the ratio of
the mean target-logit drop from ablating a window's top-8 features to that from 8 random active features of the same
layers (pooled over the windows whose target is a generated token, the same windows and the same random draws for
every value), the share of checked incidences verified, and the time spent.
Goals (issue 13): Spearman >= 0.6 and ratio >= 3 for `model`.

Run: flock /tmp/hg-cpu.lock .venv/bin/python benchmarks/faithfulness_bench.py [--prompts 50] [--new-tokens 12]
[--layers 1 3]
"""
from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import attribution  # noqa: E402
import sae  # noqa: E402
from attribution import AttributionConfig, LayerFeatures, ModelInputs, VerifyConfig  # noqa: E402

VALUES = ("model", "logit", "cosine")


def heldout_prompts(model_folder: Path, tokenizer, count: int, prompt_tokens: int, seed: int) -> list[list[int]]:
    """`count` prompts of `prompt_tokens` tokens: the start of paragraphs of held-out documents, drawn seeded."""
    from explainer.management.pydoc_gpt2 import pydoc_documents, stdlib_documents

    heldout = set(json.loads((model_folder / "training.json").read_text())["corpus"]["heldout_names"])
    paragraphs = [para.strip() for name, text in pydoc_documents() + stdlib_documents() if name in heldout
                  for para in text.split("\n\n")]
    encoded = [ids for ids in (tokenizer(p)["input_ids"] for p in paragraphs) if len(ids) >= prompt_tokens]
    if len(encoded) < count:
        raise SystemExit(f"only {len(encoded)} held-out paragraphs have {prompt_tokens} tokens; lower --prompt-tokens")
    order = np.random.default_rng(seed).permutation(len(encoded))[:count]
    return [encoded[i][:prompt_tokens] for i in sorted(order.tolist())]


def trace_of(shadow, service: sae.SAEDecodeService, layers: list[int], prompt: list[int],
             new_tokens: int) -> tuple[list[LayerFeatures], ModelInputs]:
    """Generate greedily, then the trace the capture client would send: rows for every fed position."""
    import torch

    with torch.no_grad():
        ids = torch.as_tensor([prompt])
        sequence = shadow.lm.generate(ids, attention_mask=torch.ones_like(ids), max_new_tokens=new_tokens,
                                      do_sample=False, pad_token_id=shadow.lm.config.eos_token_id)[0].tolist()
    ids = np.asarray(sequence, dtype=np.int64)
    inputs = ModelInputs(input_ids=ids[:-1], targets=ids[1:])
    states = shadow.residuals(inputs.input_ids, layers)
    out = []
    for layer in layers:
        dictionary = service.dictionary(layer)
        decoded = service.decode(layer, states[layer].astype(np.float32))
        out.append(LayerFeatures(layer, states[layer].astype(np.float32), decoded.indices.astype(np.int64),
                                 decoded.values.astype(np.float32), dictionary.W_dec, dictionary.b_dec))
    return out, inputs


def attribute_as(value: str, layers: list[LayerFeatures], inputs: ModelInputs, shadow, unembedding,
                 config: AttributionConfig):
    if value == "model":
        return attribution.attribute_through_model(layers, shadow=shadow, inputs=inputs, granularity="token",
                                                   windows=[], config=config)
    return attribution.attribute(layers, granularity="token", windows=[], token_ids=inputs.targets,
                                 unembedding=unembedding if value == "logit" else None, config=config)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default=str(ROOT / "models" / "pydoc-gpt2"))
    parser.add_argument("--dicts", default=str(ROOT / "models" / "dicts" / "pydoc-gpt2"))
    parser.add_argument("--prompts", type=int, default=50)
    parser.add_argument("--prompt-tokens", type=int, default=24)
    parser.add_argument("--new-tokens", type=int, default=12)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--layers", type=int, nargs="*", help="dictionary layers to attribute (default: all)")
    args = parser.parse_args()

    import torch
    from transformers import AutoTokenizer

    torch.set_num_threads(1)
    model_folder, dicts = Path(args.model), Path(args.dicts)
    shadow = attribution.load_shadow(model_folder, device="cpu")
    tokenizer = AutoTokenizer.from_pretrained(model_folder, local_files_only=True)
    layers = args.layers or sorted(int(p.name.removeprefix("layer_")) for p in dicts.glob("layer_*"))
    service = sae.SAEDecodeService(sae.SAEConfig(dict_root=dicts.parent, dict_name=dicts.name, device="cpu"))
    unembedding = attribution.load_unembedding(dicts / f"layer_{layers[0]}") or attribution.load_unembedding(dicts)
    config = AttributionConfig(random_seed=args.seed)
    verify_config = VerifyConfig(budget_ms=600_000.0, random_seed=args.seed)
    prompts = heldout_prompts(model_folder, tokenizer, args.prompts, args.prompt_tokens, args.seed)
    print(f"{len(prompts)} held-out prompts of {args.prompt_tokens} tokens + {args.new_tokens} generated, layers "
          f"{layers} of {model_folder.name}, dictionary {dicts.name}, verify top-{verify_config.top_k}")

    rows = {value: [] for value in VALUES}
    for n, prompt in enumerate(prompts, 1):
        trace, inputs = trace_of(shadow, service, layers, prompt, args.new_tokens)
        generated = np.arange(len(prompt) - 1, len(inputs.input_ids))  # windows whose target the model generated
        for value in VALUES:
            began = time.perf_counter()
            result = attribute_as(value, trace, inputs, shadow, unembedding, config)
            attributed = time.perf_counter() - began
            checked = attribution.verify(result.graph, trace, shadow, inputs,
                                         attribution.window_spans("token", [], len(inputs.input_ids)), verify_config,
                                         compare_windows=generated)
            rows[value].append({**checked.summary, "attribute_ms": attributed * 1000.0})
        print(f"\r{n}/{len(prompts)} prompts", end="", file=sys.stderr, flush=True)
    print(file=sys.stderr)
    print_table(rows)


def print_table(rows: dict[str, list[dict]]) -> None:
    header = (f"{'value':<8} {'traces':>6} {'Spearman':>9} {'top8 drop':>10} {'rand8 drop':>10} {'ratio':>7} "
              f"{'median ratio':>12} {'verified':>9} {'attr ms':>8} {'verify ms':>9}")
    print(header)
    print("-" * len(header))
    for value, summaries in rows.items():
        rhos = [s["spearman"] for s in summaries if s["spearman"] is not None]
        weights = [s["compared_windows"] for s in summaries if s["compared_windows"]]
        top = sum(s["top8_drop"] * s["compared_windows"] for s in summaries if s["compared_windows"])
        rand = sum(s["random8_drop"] * s["compared_windows"] for s in summaries if s["compared_windows"])
        ratios = [s["drop_ratio"] for s in summaries if s["drop_ratio"] is not None]
        checked = sum(s["checked"] for s in summaries)
        verified = sum(s["verified"] for s in summaries)
        pooled = top / rand if rand > 0 else float("nan")
        print(f"{value:<8} {len(summaries):>6} {statistics.fmean(rhos) if rhos else float('nan'):>9.3f} "
              f"{top / max(1, sum(weights)):>10.3f} {rand / max(1, sum(weights)):>10.3f} {pooled:>7.2f} "
              f"{statistics.median(ratios) if ratios else float('nan'):>12.2f} "
              f"{verified / max(1, checked):>9.0%} "
              f"{statistics.fmean(s['attribute_ms'] for s in summaries):>8.0f} "
              f"{statistics.fmean(s['elapsed_ms'] for s in summaries):>9.0f}")


if __name__ == "__main__":
    main()
