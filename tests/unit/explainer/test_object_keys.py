"""The object key scheme: whatever a client names its trace, the key stays under its tenant's prefix, and distinct
trace ids get distinct keys."""
from __future__ import annotations

import posixpath
import re
from datetime import datetime, timedelta, timezone

from hypothesis import given, settings
from hypothesis import strategies as st

from explainer.object_keys import (GRAPH_SUFFIX, MAX_SLUG_CHARS, artifacts_prefix, clean_prefix, graph_key,
                                   tenant_prefix, tenant_segment)

CREATED = datetime(2026, 11, 28, 23, 30, tzinfo=timezone.utc)
HOSTILE = ["../../etc/passwd", "/abs", "a/../../b", "x" * 10_000, "nul\x00byte", "\x00", "ｅｔｃ／ｐａｓｓｗｄ",
           "аdmin", "admin", "..", ".", "", " ", "%2e%2e%2f", "a\\..\\b", "\ud800", "🙂", "Ⅻ"]
SAFE_KEY = re.compile(r"[a-z0-9._/-]+")
# Any text at all: every code point, lone surrogates (JSON can carry them), long ids.
ANY_ID = st.text(st.characters(codec=None, min_codepoint=0, max_codepoint=0x10FFFF, categories=None), max_size=300)


def _check(prefix: str, tenant: str, trace_id: str) -> str:
    key = graph_key(prefix, tenant, trace_id, CREATED)
    home = tenant_prefix(prefix, tenant) + "/"
    assert key.startswith(home)
    assert posixpath.normpath(key) == key and not key.startswith("/")
    assert not {"", ".", ".."} & set(key.split("/"))
    assert SAFE_KEY.fullmatch(key) and len(key) < 1024  # S3's limit on a key
    rest = key.removeprefix(home).split("/")
    assert rest[:3] == ["2026", "11", "28"] and len(rest) == 4 and rest[3].endswith(GRAPH_SUFFIX)
    return key


def test_hostile_trace_ids_stay_in_the_tenant_prefix_with_distinct_keys():
    keys = [_check("hypergraph", "alice", trace_id) for trace_id in HOSTILE]
    assert len(set(keys)) == len(HOSTILE)
    assert graph_key("hypergraph", "alice", "../../etc/passwd", CREATED).startswith(
        "hypergraph/alice/2026/11/28/etcpasswd-")
    assert len(graph_key("", "alice", "x" * 10_000, CREATED).rsplit("/", 1)[1]) == MAX_SLUG_CHARS + 9 + 12


@settings(max_examples=400, deadline=None)
@given(prefix=st.sampled_from(["", "hypergraph", "/a//b/", "../up", "x/./y"]), tenant=ANY_ID, trace_id=ANY_ID)
def test_any_trace_id_of_any_tenant_stays_under_the_tenant_prefix(prefix, tenant, trace_id):
    _check(prefix, tenant, trace_id)


@settings(max_examples=200, deadline=None)
@given(st.lists(ANY_ID, min_size=2, max_size=40, unique=True))
def test_distinct_trace_ids_get_distinct_keys(trace_ids):
    keys = [graph_key("p", "alice", trace_id, CREATED) for trace_id in trace_ids]
    assert len(set(keys)) == len(keys)


@settings(max_examples=200, deadline=None)
@given(st.lists(ANY_ID, min_size=2, max_size=20, unique=True))
def test_distinct_tenants_never_share_a_prefix(slugs):
    homes = [tenant_prefix("p", slug) + "/" for slug in slugs]
    assert not any(a != b and b.startswith(a) for a in homes for b in homes)
    assert all(not home.startswith("p/_") for home in homes)  # the artifacts' folder is nobody's


def test_keys_are_stable_and_dated_by_the_utc_creation_day():
    local = CREATED.astimezone(timezone(timedelta(hours=5)))  # already the 29th there
    assert graph_key("p", "alice", "req-42", local) == graph_key("p", "alice", "req-42", CREATED)
    assert graph_key("p", "alice", "req-42", CREATED).startswith("p/alice/2026/11/28/req-42-")


def test_clean_slugs_are_kept_and_others_get_a_hash():
    assert tenant_segment("alice") == "alice" and tenant_segment("acme_corp-2") == "acme_corp-2"
    assert tenant_segment("Alice") != tenant_segment("alice") and tenant_segment("Alice").startswith("alice-")
    assert tenant_segment("").startswith("tenant-")


def test_prefixes_are_cleaned_and_artifacts_have_their_own_folder():
    assert clean_prefix("/hg//graphs/./../x/") == "hg/graphs/x" and clean_prefix("") == ""
    assert artifacts_prefix("hg", 42) == "hg/_artifacts/42" and artifacts_prefix("", 7) == "_artifacts/7"
