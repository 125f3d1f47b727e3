from __future__ import annotations

import pytest

from ingest.hooks import CaptureConfig


def test_defaults_match_the_issue_signature() -> None:
    cfg = CaptureConfig("gpt2", "abc")
    assert (cfg.topk, cfg.window_size, cfg.compress, cfg.namespace, cfg.layers) == (256, 16, "json", "activations", None)
    assert cfg.summary == "dense"


@pytest.mark.parametrize("kwargs", [{"compress": "gzip"}, {"summary": "sparse"}, {"topk": 0}, {"window_size": 0},
                                    {"namespace": "a:b"}, {"namespace": ""}])
def test_invalid_values_are_rejected(kwargs: dict) -> None:
    with pytest.raises(ValueError):
        CaptureConfig("m", "h", **kwargs)


def test_layers_are_normalised_to_a_sorted_tuple() -> None:
    assert CaptureConfig("m", "h", layers=[5, 1, 5]).layers == (1, 5)


def test_from_env_reads_capture_variables(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CAPTURE_TTL_S", "77")
    monkeypatch.setenv("CAPTURE_COMPRESS", "f16-lz4")
    monkeypatch.setenv("CAPTURE_SUMMARY", "topk")
    monkeypatch.setenv("CAPTURE_TOPK", "8")
    cfg = CaptureConfig.from_env(model_name="m", model_hash="h", layers=[2], window_size=4)
    assert (cfg.ttl_s, cfg.compress, cfg.summary, cfg.topk, cfg.layers, cfg.window_size) == (
        77, "f16-lz4", "topk", 8, (2,), 4)
