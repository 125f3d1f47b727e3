"""Stitching activation parts into one array per layer, rows against tokens, and the causal shift of logit targets."""
from __future__ import annotations

import numpy as np
import pytest

from explainer.pipeline import (LayerRows, PipelineError, _check_rows_match_tokens, _logit_targets, _stitch,
                                public_message)


def part(start: int, count: int, dim: int = 3) -> LayerRows:
    positions = np.arange(start, start + count, dtype=np.int64)
    return LayerRows(positions, np.tile(positions[:, None], (1, dim)).astype(np.float32))


def test_parts_in_any_order_are_joined_by_position():
    stitched = _stitch(6, [part(4, 3), part(0, 4)])
    assert stitched.shape == (7, 3)
    assert stitched[:, 0].tolist() == list(range(7))


def test_a_gap_is_refused_and_named():
    with pytest.raises(PipelineError, match=r"no activations for positions \[2, 3\]"):
        _stitch(6, [part(0, 2), part(4, 2)])


def test_a_huge_offset_is_refused_without_allocating_for_it():
    with pytest.raises(PipelineError, match=r"positions \[0, 1, 2, 3, 4, 5, 6, 7, 8, 9\]"):
        _stitch(6, [part(10**12, 2)])


def test_overlapping_parts_are_refused():
    with pytest.raises(PipelineError, match=r"more than once: \[1, 2\]"):
        _stitch(6, [part(0, 3), part(1, 3)])


def test_widths_must_agree():
    with pytest.raises(PipelineError, match="width differs"):
        _stitch(6, [part(0, 2, dim=3), part(2, 2, dim=4)])


@pytest.mark.parametrize("rows, tokens", [(12, 12), (11, 12)])
def test_rows_may_cover_every_token_or_all_but_the_last(rows, tokens):
    _check_rows_match_tokens(rows, tokens, tokenized_by_service=False)


@pytest.mark.parametrize("rows, tokens", [(40, 12), (5, 12), (0, 1)])
def test_other_row_counts_fail_with_both_numbers(rows, tokens):
    with pytest.raises(PipelineError, match=f"cover {rows} positions but the completion has {tokens} tokens"):
        _check_rows_match_tokens(rows, tokens, tokenized_by_service=False)


def test_the_advice_says_to_send_tokens_when_the_service_split_the_text():
    with pytest.raises(PipelineError, match="send the model's tokens"):
        _check_rows_match_tokens(5, 12, tokenized_by_service=True)


def test_logit_targets_follow_the_causal_shift():
    assert _logit_targets([10, 11, 12, 13], 3) == [11, 12, 13]  # generate: one id more than rows
    assert _logit_targets([10, 11, 12], 3) == [10, 11, 12]  # already aligned by the client
    assert _logit_targets([10, 11], 3) is None  # too few ids: no logit targets
    assert _logit_targets(None, 3) is None


def test_public_messages_hide_server_folders(settings, tmp_path):
    settings.DICT_ROOT = str(tmp_path / "dicts")
    message = public_message(f"dictionary {tmp_path / 'dicts'}/sample/layer_3: folder is missing")
    assert message == "dictionary $DICT_ROOT/sample/layer_3: folder is missing"
