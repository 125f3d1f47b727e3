"""The surrogate and the provider check against the reference model server running as its own process."""
from __future__ import annotations

import socket
import threading

import numpy as np
import pytest

from attribution import ConceptConfig, extract_concepts
from attribution.config import InteractionConfig
from attribution.endpoint import EndpointModel, masked_text, provider_verify
from attribution.interactions import InteractionEdge, concept_interactions
from hypergraph_site.demo import processes
from tests.local_servers import free_port

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")

pytestmark = pytest.mark.slow

PROMPT = "Use os.path.join to build paths and call sys.exit() in the `finally` clause of the Python Tutorial."


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    """`serve_model --no-capture` on a free port, and the same model in-process to compare with."""
    from django.conf import settings

    from attribution.shadow import load_shadow

    port = free_port()
    log = tmp_path_factory.mktemp("surrogate") / "model_server.log"
    process = processes.start_model_server(port, log)
    try:
        processes.wait_http(f"http://127.0.0.1:{port}/healthz", timeout_s=60, process=process)
        folder = f"{settings.MODEL_ROOT}/pydoc-gpt2"
        tokenizer = transformers.AutoTokenizer.from_pretrained(folder, local_files_only=True)
        yield f"http://127.0.0.1:{port}", load_shadow(folder, device="cpu"), tokenizer
    finally:
        processes.stop(process)


def _greedy(shadow, ids: np.ndarray) -> int:
    with torch.no_grad():
        return int(torch.argmax(shadow.lm(torch.as_tensor(ids[None])).logits[0, -1]))


def test_the_endpoint_gives_the_in_process_probabilities(served):
    url, shadow, tokenizer = served
    ids = np.array(tokenizer(PROMPT, add_special_tokens=False)["input_ids"])
    prompts = [ids, ids[:-3], np.concatenate([ids[:5], [tokenizer.unk_token_id], ids[9:]])]
    endpoint = EndpointModel(url, model="pydoc-gpt2")
    np.testing.assert_allclose(endpoint.next_token_probabilities(prompts, 11),
                               shadow.next_token_probabilities(prompts, 11), rtol=1e-4, atol=1e-7)


def test_the_interaction_search_reads_the_same_through_the_endpoint(served):
    url, shadow, tokenizer = served
    encoded = tokenizer(PROMPT, return_offsets_mapping=True, add_special_tokens=False)
    concepts = extract_concepts(PROMPT, token_spans=encoded["offset_mapping"], config=ConceptConfig())
    assert len(concepts) >= 4
    ids = np.array(encoded["input_ids"])
    target = _greedy(shadow, ids)
    config = InteractionConfig(groups=4, low_gain_streak=100, budget_ms=120_000)  # the same work both ways
    here = concept_interactions(concepts, ids, target, shadow, mask_id=tokenizer.unk_token_id, config=config)
    there = concept_interactions(concepts, ids, target, EndpointModel(url, model="pydoc-gpt2"),
                                 mask_id=tokenizer.unk_token_id, config=config)
    assert there.calls == here.calls > len(concepts)
    assert there.p0 == pytest.approx(here.p0, rel=1e-3)
    assert there.drops == pytest.approx(here.drops, rel=1e-3, abs=1e-6)


def _edges(concepts) -> list[InteractionEdge]:
    pairs = [(concepts[0], concepts[1]), (concepts[1], concepts[2]), (concepts[2], concepts[3])]
    return [InteractionEdge(members=(a.id, b.id), synergy=0.3, weight=0.5, p_group=0.1, member_drops=(0.0, 0.0))
            for a, b in pairs]


def test_the_provider_checks_the_strongest_edges_within_its_budget(served):
    url, shadow, tokenizer = served
    concepts = extract_concepts(PROMPT)
    ids = np.array(tokenizer(PROMPT, add_special_tokens=False)["input_ids"])
    target_text = tokenizer.decode([_greedy(shadow, ids)])
    options = {"base_url": url, "model": "pydoc-gpt2", "timeout_s": 10.0}
    checks = provider_verify(_edges(concepts), concepts, PROMPT, target_text, top_k=2, max_calls=20, **options)
    assert [c.label for c in checks] == ["verified", "verified", "skipped"]
    assert all(c.p0 > 0 and c.agrees in (True, False) for c in checks[:2])
    limited = provider_verify(_edges(concepts), concepts, PROMPT, target_text, top_k=3, max_calls=2, **options)
    assert [c.label for c in limited] == ["verified", "budget_exhausted", "budget_exhausted"]


def test_a_provider_that_is_down_or_slow_gives_labels_not_errors():
    concepts = extract_concepts(PROMPT)
    down = provider_verify(_edges(concepts), concepts, PROMPT, " the", base_url=f"http://127.0.0.1:{free_port()}",
                           model="m", top_k=2, max_calls=20, timeout_s=2.0)
    assert [c.label for c in down] == ["baseline_failed", "baseline_failed", "skipped"]
    with socket.socket() as silent:  # accepts connections, never answers
        silent.bind(("127.0.0.1", 0))
        silent.listen()
        held = []  # the accepted connection stays open (and silent) until the test ends
        threading.Thread(target=lambda: held.append(silent.accept()), daemon=True).start()
        slow = provider_verify(_edges(concepts), concepts, PROMPT, " the",
                               base_url=f"http://127.0.0.1:{silent.getsockname()[1]}", model="m", top_k=1,
                               max_calls=20, timeout_s=0.5)
    assert [c.label for c in slow] == ["baseline_failed", "skipped", "skipped"] and "timed out" in slow[0].reason


def test_a_masked_prompt_replaces_each_concept_by_its_own_span():
    text = "copy `x` then copy `x` again"
    concepts = extract_concepts(text)
    assert [c.text for c in concepts] == ["x", "x"]
    assert masked_text(text, concepts[1:]) == "copy `x` then copy `[MASK]` again"


def test_a_trace_without_an_in_process_model_gets_its_concepts_through_the_endpoint(served):
    """`SHADOW_ENDPOINT`: the prompt placed by the completion's own token texts, the same reading as in-process."""
    from explainer.prompt_concepts import concepts_of, concepts_via_endpoint
    from explainer.shadow import Shadow
    from explainer.trace_data import Completion

    url, shadow, tokenizer = served
    ids = list(tokenizer(PROMPT)["input_ids"])  # as the capture client sends it: a leading special token here
    for _ in range(3):
        ids.append(_greedy(shadow, np.array(ids)))
    completion = Completion(model="pydoc-gpt2", prompt=PROMPT, text=tokenizer.decode(ids[-3:]),
                            tokens=[tokenizer.decode([t]) for t in ids], token_ids=ids)
    here = concepts_of(Shadow(model=shadow, tokenizer=tokenizer, vocab_size=len(tokenizer), max_positions=256),
                       completion, np.array(ids))
    there = concepts_via_endpoint(EndpointModel(url, model="pydoc-gpt2"), completion,
                                  mask_id=tokenizer.unk_token_id)
    assert there["concepts"] == here["concepts"] and len(there["concepts"]) >= 4
    assert there["target"] == here["target"]
    assert there["p0"] == pytest.approx(here["p0"], rel=1e-3)
    assert there["drops"] == pytest.approx(here["drops"], rel=1e-3, abs=1e-6)
