"""What a demo run finds from the runs before it: its API key (reused, or revoked and replaced, never piling up) and
the sample traces already explained (left alone, or explained again with --fresh)."""
from __future__ import annotations

import pytest
from django.test import Client

from explainer.models import ApiKey, Explanation, Trace, TraceEvent
from explainer.services import api_key_create, tenant_create
from hypergraph_site.demo.management.commands.demo import SAMPLE_IDS, demo_api_key, demo_traces_sort
from tests.api.admin_traces import complete_trace, failed_trace

pytestmark = pytest.mark.django_db


@pytest.fixture
def demo():
    return tenant_create(slug="demo", name="Demo")


def _working(key: str) -> bool:
    return Client().get("/v1/traces", HTTP_X_API_KEY=key).status_code == 200


def _unrevoked(tenant) -> list[ApiKey]:
    return list(tenant.api_keys.filter(revoked=False))


def test_the_key_is_kept_and_reused(demo, tmp_path):
    key_file = tmp_path / "var" / "demo_api_key"
    key, outcome = demo_api_key(demo, key_file)
    assert outcome == "created" and _working(key)
    assert key_file.read_text().strip() == key and oct(key_file.stat().st_mode & 0o777) == "0o600"
    assert demo_api_key(demo, key_file) == (key, "reused")
    assert demo.api_keys.count() == 1


@pytest.mark.parametrize("lose", ["revoked", "deleted", "file lost", "another tenant's"])
def test_a_key_that_no_longer_works_is_revoked_and_replaced_never_piling_up(demo, tmp_path, lose):
    key_file = tmp_path / "demo_api_key"
    old, _ = demo_api_key(demo, key_file)
    if lose == "revoked":
        demo.api_keys.update(revoked=True)
    elif lose == "deleted":
        demo.api_keys.all().delete()
    elif lose == "file lost":
        key_file.unlink()
    else:
        _, foreign = api_key_create(tenant=tenant_create(slug="other"), name="demo")
        key_file.write_text(foreign)
    new, outcome = demo_api_key(demo, key_file)
    assert new != old and outcome == ("created" if lose == "file lost" else "replaced")
    assert _working(new) and not _working(old)
    assert [k.pk for k in _unrevoked(demo)] == [ApiKey.objects.get_from_key(new).pk]


def test_keys_left_by_earlier_demos_are_revoked(demo, tmp_path):
    earlier = [api_key_create(tenant=demo, name="demo")[1] for _ in range(3)]
    kept = api_key_create(tenant=demo, name="someone else's")[1]
    key, _ = demo_api_key(demo, tmp_path / "demo_api_key")
    assert not any(_working(old) for old in earlier)
    assert _working(key) and _working(kept)


def test_complete_sample_traces_are_left_alone_and_the_rest_sent(demo, settings, tmp_path):
    settings.ARTIFACT_ROOT = str(tmp_path)
    biology, finance, code = SAMPLE_IDS
    done = complete_trace(demo, biology)
    failed = failed_trace(demo, finance)
    (tmp_path / str(failed.pk)).mkdir()
    explained, pending = demo_traces_sort(demo, SAMPLE_IDS, fresh=False)
    assert explained == [biology] and pending == [finance, code]
    assert Trace.objects.filter(pk=done.pk).exists()
    assert not Trace.objects.filter(pk=failed.pk).exists()  # re-sending its events would only be acknowledged
    assert not (tmp_path / str(failed.pk)).exists()


def test_fresh_deletes_the_sample_traces_of_the_demo_only(demo, settings, tmp_path, make_tenant):
    settings.ARTIFACT_ROOT = str(tmp_path)
    for trace_id in SAMPLE_IDS:
        complete_trace(demo, trace_id)
    other, _ = make_tenant("alice")
    kept = [complete_trace(other, SAMPLE_IDS[0]), complete_trace(demo, "not-a-sample")]
    assert demo_traces_sort(demo, SAMPLE_IDS, fresh=True) == ([], list(SAMPLE_IDS))
    assert not demo.traces.filter(trace_id__in=SAMPLE_IDS).exists()
    assert set(Trace.objects.values_list("pk", flat=True)) == {trace.pk for trace in kept}
    assert Explanation.objects.count() == TraceEvent.objects.count() == 2
