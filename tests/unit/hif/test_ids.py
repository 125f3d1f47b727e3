"""The id scheme: what each kind of row is called, and feature ids read back without a regex."""

import numpy as np
from hypothesis import given
from hypothesis import strategies as st

from hif import ids


def test_ids_name_what_a_row_is():
    assert ids.feature_node(3, 1207) == "feat_3_1207"
    assert (ids.input_token(0), ids.output_token(12)) == ("token_in_0", "token_out_12")
    assert (ids.window("sentence", 2), ids.window("token", 0)) == ("sent-2", "tok-0")
    assert ids.incidence("shapley", "tok-4", 3, 1207) == "att_shapley_tok-4_3_1207"
    assert ids.supernode("Biology / Cells") == "super_biology_cells"
    assert ids.supernode("Ωμέγα") == ids.supernode("Ωμέγα") != ids.supernode("Ψ")
    assert ids.supernode("Ωμέγα").startswith("super_h")


@given(st.integers(0, 10**6), st.integers(0, 10**9))
def test_feature_ids_parse_back(layer, index):
    assert ids.parse_feature_node(ids.feature_node(layer, index)) == (layer, index)


def test_other_ids_are_not_features():
    for other in ("feat_3", "feat_3_", "feat__1", "feat_a_1", "feat_-1_2", "feat_1_2_3", "feat_1_+2", "xfeat_1_2",
                  "token_out_1", "super_feat", "att_acdc_tok-0_1_2", ""):
        assert ids.parse_feature_node(other) is None, other


def test_column_minting_matches_one_by_one():
    layer, index, position = np.array([0, 12, 3]), np.array([5, 0, 77]), np.array([0, 9, 41])
    assert ids.feature_nodes(layer, index) == [ids.feature_node(la, ix) for la, ix in zip(layer, index)]
    assert ids.token_nodes(ids.OUTPUT_TOKEN, position) == [ids.output_token(p) for p in position]
    methods, windows = ("acdc", "saliency"), ("sent-0", "sent-1")
    minted = ids.incidences(methods, windows, np.array([1, 0, 1]), np.array([0, 1, 1]), layer, index)
    assert minted == ["att_saliency_sent-0_0_5", "att_acdc_sent-1_12_0", "att_saliency_sent-1_3_77"]


NAMES = st.sampled_from(["acdc", "saliency", "shapley", "a", "ab", "a_b", "x-y", "Ω"])
WINDOW_NAMES = st.builds(lambda p, j: f"{p}-{j}", st.sampled_from(["sent", "tok", "s_t", "s"]), st.integers(0, 30))


@given(st.lists(NAMES, min_size=1, max_size=4, unique=True),
       st.lists(WINDOW_NAMES, min_size=1, max_size=8, unique=True), st.data())
def test_incidence_order_sorts_like_the_minted_ids(methods, windows, data):
    n = data.draw(st.integers(1, 40))
    method = np.array(data.draw(st.lists(st.integers(0, len(methods) - 1), min_size=n, max_size=n)))
    window = np.array(data.draw(st.lists(st.integers(0, len(windows) - 1), min_size=n, max_size=n)))
    layer = np.array(data.draw(st.lists(st.integers(0, 120), min_size=n, max_size=n)))
    index = np.array(data.draw(st.lists(st.integers(0, 10**9), min_size=n, max_size=n)))
    keys = ids.incidence_order(methods, windows, method, window, layer, index)
    minted = ids.incidences(methods, windows, method, window, layer, index)
    if keys is None:  # only when one name, with its "_", begins another of its field
        assert any(b.startswith(a) for field in (methods, windows)
                   for a, b in zip(sorted(f"{x}_" for x in field), sorted(f"{x}_" for x in field)[1:]))
        return
    assert sorted(range(n), key=lambda i: (minted[i], i)) == sorted(range(n), key=lambda i: (int(keys[i]), i))
    assert len(set(keys.tolist())) == len(set(minted))


@given(st.lists(st.tuples(st.sampled_from(["feature", "input", "output"]), st.integers(0, 300),
                          st.integers(0, 10**12)), min_size=1, max_size=60))
def test_node_order_sorts_like_the_minted_ids(rows):
    kind = np.array([k for k, _, _ in rows])
    small, big = np.array([a for _, a, _ in rows]), np.array([b for _, _, b in rows])
    is_feature, is_input = kind == "feature", kind == "input"
    keys = ids.node_order(is_feature, is_input, np.where(is_feature, small, -1), np.where(is_feature, big, -1),
                          np.where(is_feature, -1, small))
    minted = [ids.feature_node(a, b) if k == "feature" else ids.input_token(a) if k == "input" else
              ids.output_token(a) for k, a, b in rows]
    assert keys is not None
    order = sorted(range(len(rows)), key=lambda i: (int(keys[i]), i))
    assert [minted[i] for i in order] == sorted(minted)
