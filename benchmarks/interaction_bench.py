"""Benchmark: concepts and their interactions for a 64-token prompt with 8 concepts, on the trained language model.

The model is `models/pydoc-gpt2` (trained here by `manage.py train_lm`, shipped in the repository); the prompt is
written in the style of its training text. It prints the concepts found, the search's calls, cache hits, rounds and
why it stopped, the edges, and the wall time against `INTERACTION_BUDGET_MS` — once with a cold probability cache and
once warm (the same prompt explained again: every probability is a cache hit).

Run: .venv/bin/python benchmarks/interaction_bench.py [--repeat 3]
"""
from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # run as a script from a checkout

import numpy as np  # noqa: E402

from attribution import ConceptConfig, extract_concepts  # noqa: E402
from attribution.config import InteractionConfig  # noqa: E402
from attribution.interactions import ProbabilityCache, concept_interactions  # noqa: E402
from attribution.shadow import load_shadow  # noqa: E402

PROMPT = ("The `for` statement iterates over a \"list of strings\" or a 'tuple of numbers' in order. Use "
          "os.path.join to build paths and sys.exit() to stop early; see the Python Language Reference on "
          "the `else` clause and the `break` statement. The")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=3, help="cold-cache runs (the median is reported)")
    args = parser.parse_args()
    from transformers import AutoTokenizer

    folder = ROOT / "models" / "pydoc-gpt2"
    tokenizer = AutoTokenizer.from_pretrained(str(folder), local_files_only=True)
    shadow = load_shadow(folder, device="cpu")
    encoded = tokenizer(PROMPT, return_offsets_mapping=True, add_special_tokens=False)
    ids = np.array(encoded["input_ids"])
    concepts = extract_concepts(PROMPT, token_spans=encoded["offset_mapping"], config=ConceptConfig())
    target = _greedy(shadow, ids)
    print(f"prompt: {len(ids)} tokens, {len(concepts)} concepts; target {tokenizer.decode([target])!r}")
    for c in concepts:
        print(f"  {c.id} {c.label:<12} {c.text!r} tokens {list(c.tokens)}")
    config = InteractionConfig.from_env({})
    times, result = [], None
    for _ in range(args.repeat):
        started = time.perf_counter()
        result = concept_interactions(concepts, ids, target, shadow, mask_id=tokenizer.unk_token_id, config=config,
                                      cache=ProbabilityCache(config.cache_size))
        times.append((time.perf_counter() - started) * 1000)
    cache = ProbabilityCache(config.cache_size)
    concept_interactions(concepts, ids, target, shadow, mask_id=tokenizer.unk_token_id, config=config, cache=cache)
    started = time.perf_counter()
    warm = concept_interactions(concepts, ids, target, shadow, mask_id=tokenizer.unk_token_id, config=config,
                                cache=cache)
    warm_ms = (time.perf_counter() - started) * 1000
    print(f"P0 {result.p0:.4f}; drops {result.drops}")
    for edge in result.edges:
        print(f"  edge {edge.members}: synergy {edge.synergy:.4f} weight {edge.weight:.4f} P_G {edge.p_group:.4f}")
    median = statistics.median(times)
    print(f"cold cache: {median:.0f} ms median of {args.repeat} ({', '.join(f'{t:.0f}' for t in times)}), "
          f"{result.calls} model calls, {result.cache_hits} cache hits, {result.rounds} rounds, "
          f"stopped: {result.stopped}, {len(result.edges)} edges")
    print(f"warm cache: {warm_ms:.0f} ms, {warm.calls} model calls, {warm.cache_hits} cache hits")
    verdict = "MET" if median <= config.budget_ms else "NOT MET"
    print(f"goal: within INTERACTION_BUDGET_MS ({config.budget_ms:.0f} ms): {verdict}")


def _greedy(shadow, ids: np.ndarray) -> int:
    """The token the model emits after the prompt (greedy)."""
    import torch

    with torch.no_grad():
        return int(shadow.lm(torch.as_tensor(ids[None])).logits[0, -1].argmax())


if __name__ == "__main__":
    main()
