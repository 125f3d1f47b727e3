"""The staged (GPU) capture path run on torch CPU: buffers reused across calls and handles, decode steps gathered
into one host copy per block, rows identical to the direct path, flush draining rows still in flight, and a block
dropped (never waited for) when no host buffer is free."""
from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")

from ingest.hooks import CaptureConfig, CapturePipeline, attach, detach, read_shards  # noqa: E402
from ingest.hooks import torch_hooks  # noqa: E402

MIB = 1 << 20


@pytest.fixture(autouse=True)
def fresh_pools(monkeypatch: pytest.MonkeyPatch) -> None:
    """Per-device pools of this test only, so allocation counts start at zero."""
    monkeypatch.setattr(torch_hooks, "_POOLS", {})


def _stats() -> dict[str, int]:
    return torch_hooks.staging_stats().get("cpu", dict.fromkeys(torch_hooks._Pool.STATS, 0))


class _Stack(torch.nn.Module):
    """Three linear blocks: any sequence length, so a step of a few MiB stays cheap."""

    def __init__(self, width: int = 64, dtype: object = torch.float32) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.layers = torch.nn.ModuleList(torch.nn.Linear(width, width) for _ in range(3)).to(dtype)

    def forward(self, x: object) -> object:
        for layer in self.layers:
            x = torch.tanh(layer(x))
        return x


def _gpt2() -> object:
    torch.manual_seed(5)
    config = transformers.GPT2Config(n_layer=4, n_embd=64, n_head=4, vocab_size=1000, n_positions=256,
                                     bos_token_id=0, eos_token_id=0)
    model = transformers.GPT2LMHeadModel(config).eval()
    model.generation_config.pad_token_id = 0
    return model


def _forward(model: object, x: object, *, staged: bool = True, compress: str = "f16-zstd") -> tuple[dict, dict]:
    pipeline = CapturePipeline(CaptureConfig("s", "h", window_size=64, compress=compress))
    handle = attach(model, pipeline, "t", staged=staged)
    with torch.inference_mode():
        model(x)
    detach(handle)  # outside inference mode: the pool's buffers must be normal tensors
    envelope = pipeline.flush("t")
    assert envelope["tokens"] == x.shape[1] and envelope["dropped"] == 0
    return envelope, pipeline.store.data


def test_same_or_smaller_calls_allocate_nothing_and_growth_is_geometric() -> None:
    model = _Stack()
    _forward(model, torch.randn(1, 3000, 64))  # 3 layers x 3000 x 64 float32 = 2.2 MiB: buffers of 4 MiB
    first = _stats()
    assert (first["host_allocs"], first["device_allocs"], first["host_bytes"]) == (1, 1, 4 * MIB)
    for length in (3000, 1000, 4000):  # new handles and pipelines, same pool; 4000 tokens = 2.9 MiB still fits
        _forward(model, torch.randn(1, length, 64))
    again = _stats()
    assert (again["host_allocs"], again["device_allocs"], again["copies"]) == (1, 1, 4)
    _forward(model, torch.randn(1, 6000, 64))  # 4.4 MiB: one larger buffer of each kind, a power of two
    grown = _stats()
    assert (grown["host_allocs"], grown["device_allocs"]) == (2, 2)
    assert grown["host_bytes"] == 4 * MIB + 8 * MIB and grown["device_bytes"] == 4 * MIB + 8 * MIB


def test_staged_rows_identical_to_direct_copy_bfloat16() -> None:
    """bfloat16 rows widened by the copier (numpy shift) equal torch's `.float()` of the direct path, bit for bit."""
    model = _Stack(dtype=torch.bfloat16)
    x = torch.randn(1, 40, 64).to(torch.bfloat16)
    direct = _forward(model, x, staged=False, compress="json")
    staged = _forward(model, x, staged=True, compress="json")
    assert staged == direct
    special = torch.tensor([0.0, -0.0, 1e-40, 3.14, -65504.0, float("inf"), float("-inf"), float("nan")])
    special = special.to(torch.bfloat16)
    widened = torch_hooks._float32(torch, special)
    assert widened.view(np.uint32).tolist() == special.float().numpy().view(np.uint32).tolist()


def test_decode_steps_share_host_copies_and_match_direct_path() -> None:
    model = _gpt2()
    prompt = torch.randint(1, 1000, (2, 6), generator=torch.Generator().manual_seed(4))
    results = []
    for staged in (False, True):
        pipeline = CapturePipeline(CaptureConfig("g", "h", window_size=5, compress="f16-zstd"))
        attach(model, pipeline, ["a", "b"], layers=[1, 3], staged=staged)
        with torch.inference_mode():
            model.generate(prompt, max_new_tokens=20, do_sample=False)
        detach(model)  # closes the last, partial decode block outside inference mode
        results.append(([pipeline.flush("a"), pipeline.flush("b")], pipeline.store.data))
    assert results[0] == results[1]
    assert results[1][0][0]["tokens"] == 25 and results[1][0][0]["dropped"] == 0
    # the prefill, then 19 single-token steps: a block of 16 and the last 3 (copied at detach)
    assert _stats()["copies"] == 3


def test_flush_without_detach_delivers_the_open_block() -> None:
    model = _gpt2()
    pipeline = CapturePipeline(CaptureConfig("g", "h", window_size=4))
    handle = attach(model, pipeline, "t", layers=[0, 2], staged=True)
    out = model.generate(torch.tensor([[5, 6, 7]]), max_new_tokens=8, do_sample=False)
    envelope = pipeline.flush("t")  # 7 decode steps still staged on the device
    detach(handle)
    positions = out.shape[1] - 1
    assert envelope["tokens"] == positions and envelope["dropped"] == 0
    captured = read_shards(pipeline.store, envelope["shards"])
    with torch.no_grad():
        hidden = model(out, output_hidden_states=True).hidden_states
    tokens, rows = captured[2]
    assert tokens.tolist() == list(range(positions))
    np.testing.assert_allclose(rows, hidden[3][0, :positions].numpy(), atol=2e-5)


def test_no_free_host_buffer_drops_the_block_instead_of_waiting(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(torch_hooks._Pool, "RING", 1)
    pool = torch_hooks._pool(torch, torch.device("cpu"))
    held = pool.take_host(1)  # the ring's only buffer, busy (as if the copier thread were behind)
    model = _Stack()
    pipeline = CapturePipeline(CaptureConfig("s", "h"))
    handle = attach(model, pipeline, "t", staged=True)
    with torch.no_grad():
        model(torch.randn(1, 5, 64))
    detach(handle)
    envelope = pipeline.flush("t")
    assert envelope["dropped"] == 3 * 5 and envelope["shards"] == []
    assert _stats()["dropped_copies"] == 1
    pool.give_host(held)
    _forward(model, torch.randn(1, 5, 64))  # the buffer is back: nothing dropped, nothing allocated
    assert _stats()["host_allocs"] == 1
