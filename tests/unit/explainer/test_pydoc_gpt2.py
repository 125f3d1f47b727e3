"""The shipped causal LM: corpus split, tokenizer and tiny training are deterministic; its unembedding file is the
model's own; the capture hooks read the same tensor its dictionaries were trained on."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("transformers")

from attribution import load_unembedding  # noqa: E402
from explainer.management import pydoc_gpt2  # noqa: E402
from explainer.management.pydoc_gpt2 import (LMConfig, capture, corpus_split, display_tokens,  # noqa: E402
                                              load_model, train_lm, train_tokenizer, write_unembedding)
from ingest.hooks import CaptureConfig, CapturePipeline, attach, detach, read_shards  # noqa: E402

REPO = Path(__file__).resolve().parents[3]
SHIPPED = REPO / "models" / "pydoc-gpt2"
SHIPPED_DICTS = REPO / "models" / "dicts" / "pydoc-gpt2"


def test_the_split_is_fixed_by_the_seed_and_disjoint():
    cfg = LMConfig.tiny(max_documents=None)
    training, heldout = corpus_split(cfg)
    again = corpus_split(cfg)
    assert (training, heldout) == again
    assert not {n for n, _ in training} & {n for n, _ in heldout}
    assert len(heldout) == round(0.05 * (len(training) + len(heldout)))
    other = corpus_split(replace(cfg, seed=1))[1]
    assert {n for n, _ in other} != {n for n, _ in heldout}


def test_the_tokenizer_is_deterministic_and_starts_every_text_with_endoftext():
    texts = [text for _, text in corpus_split(LMConfig.tiny())[0]]
    first, second = train_tokenizer(texts, 400), train_tokenizer(texts, 400)
    assert first.get_vocab() == second.get_vocab() and len(first) == 400
    ids = first("The for statement")["input_ids"]
    assert ids[0] == first.eos_token_id == 0
    assert first.decode(ids, skip_special_tokens=True) == "The for statement"
    shown = display_tokens(first, first("for x in range(3):\n  pass")["input_ids"][1:])
    words: list[str] = []
    for token in shown:  # WordPiece-like: continuations carry "##", whitespace is a marker, nothing keeps a space
        if token.startswith("##"):
            words[-1] += token[2:]
        elif token not in ("⏎", "␣"):
            words.append(token)
    assert words[:3] == ["for", "x", "in"] and "".join(words) == "forxinrange(3):pass" and "⏎" in shown


def test_tiny_training_is_seeded_and_saves_a_loadable_model(tmp_path):
    lines: list[str] = []
    first = train_lm(LMConfig.tiny(), tmp_path / "a", show_progress=False, echo=lines.append)
    second = train_lm(LMConfig.tiny(), tmp_path / "b", show_progress=False, echo=lambda s: None)
    assert "held-out perplexity" in lines[0] and "unigram" in lines[0]
    figures = json.loads((first.folder / "training.json").read_text())
    assert figures["steps"] == 12 and figures["seed"] == 0 and figures["corpus"]["heldout_documents"] >= 1
    assert figures["heldout_perplexity"] > 0 and figures["unigram_perplexity"] > 0
    a = (first.folder / "model.safetensors").read_bytes()
    assert a == (second.folder / "model.safetensors").read_bytes()
    tokenizer, model = load_model(first.folder)
    assert tokenizer.is_fast and tokenizer("x")["input_ids"][0] == 0 and model.config.n_layer == 2
    third = train_lm(LMConfig.tiny(seed=1), tmp_path / "c", show_progress=False, echo=lambda s: None)
    assert (third.folder / "model.safetensors").read_bytes() != a


def test_the_unembedding_file_is_the_models_final_norm_and_lm_head(tmp_path):
    folder = train_lm(LMConfig.tiny(), tmp_path, show_progress=False, echo=lambda s: None).folder
    path = write_unembedding(folder, tmp_path)
    unembedding = load_unembedding(tmp_path)
    _, model = load_model(folder)
    assert path.name == "unembed.safetensors"
    assert unembedding.W_U.shape == (32, 384) and unembedding.eps == model.config.layer_norm_epsilon
    np.testing.assert_array_equal(unembedding.W_U, model.lm_head.weight.detach().numpy().T)
    np.testing.assert_array_equal(unembedding.ln_f_weight, model.transformer.ln_f.weight.detach().numpy())
    np.testing.assert_array_equal(unembedding.ln_f_bias, model.transformer.ln_f.bias.detach().numpy())
    # the logit lens of the last block's output is the model's own logits
    ids = torch.tensor([[0, 5, 9, 17, 3]])
    with torch.no_grad():
        out = model(ids, output_hidden_states=True)
    last = out.hidden_states[-1][0].numpy()  # HF applied ln_f to the last hidden state already
    np.testing.assert_allclose(last @ unembedding.W_U, out.logits[0].numpy(), atol=1e-4)


def test_the_capture_hooks_read_the_tensor_the_shipped_dictionaries_were_trained_on(monkeypatch):
    """Layer L = output of `transformer.h[L]`: what `ingest.hooks` captures during generation is what `capture`
    (the SAE's training data) reads and, but for the last block, Hugging Face's `hidden_states[L + 1]`."""
    tokenizer, model = load_model(SHIPPED)
    layers = sorted(int(p.name.removeprefix("layer_")) for p in SHIPPED_DICTS.glob("layer_*"))
    last = model.config.n_layer - 1
    assert layers and all(0 <= layer <= last for layer in layers)
    pipeline = CapturePipeline(CaptureConfig("pydoc-gpt2", "h", layers=[*layers, last]))
    prompt = tokenizer("The for statement", return_tensors="pt")
    handle = attach(model, pipeline, "t", [*layers, last])
    with torch.no_grad():
        out = model.generate(**prompt, max_new_tokens=6, do_sample=False)
    detach(handle)
    captured = read_shards(pipeline.store, pipeline.flush("t")["shards"])
    positions = out.shape[1] - 1
    with torch.no_grad():
        hidden = model(out, output_hidden_states=True).hidden_states
    for layer in layers:
        rows = captured[layer][1]
        assert rows.shape == (positions, model.config.n_embd)
        if layer < last:
            np.testing.assert_allclose(rows, hidden[layer + 1][0, :positions].numpy(), atol=1e-4)
    with torch.no_grad():  # the last block: HF's hidden_states[-1] has ln_f applied, the capture is raw
        normed = model.transformer.ln_f(torch.from_numpy(captured[last][1])).numpy()
    np.testing.assert_allclose(normed, hidden[-1][0, :positions].numpy(), atol=1e-4)
    # the SAE's training capture of the prompt reads the same rows (its leading <|endoftext|> left out)
    monkeypatch.setattr(pydoc_gpt2, "capture_chunks", lambda heldout: [("probe", "The for statement")])
    for layer in layers:
        corpus = capture(SHIPPED, layer, 10_000, 128)
        assert corpus.tokens == ["The", "for", "statement"]
        np.testing.assert_allclose(corpus.acts, captured[layer][1][1:4], atol=1e-4)
