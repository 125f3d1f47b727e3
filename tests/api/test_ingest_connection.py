"""The accept statements' use of their PostgreSQL connection: prepared once per connection, no ping per request, and
an event still accepted when the connection died while idle (what the ping was for)."""
from __future__ import annotations

import psycopg
import pytest
from django.db import OperationalError, connection

from explainer.models import Trace, TraceEvent
from ingest.services import event_accept
from ingest.validation import validate_event
from tests.api.test_ingest import activations, completion

pytestmark = [pytest.mark.django_db(transaction=True),
              pytest.mark.skipif("connection.vendor != 'postgresql'", reason="the accept statements are PostgreSQL's")]


def _accept_layers(tenant, trace_id: str, layers: range) -> None:
    for layer in layers:
        event_accept(tenant=tenant, event=validate_event(activations(trace_id, rows=2, layer=layer)))


def _prepared_inserts() -> list[str]:
    """This connection's prepared statements that insert an event."""
    with connection.cursor() as cursor:
        cursor.execute("SELECT statement FROM pg_prepared_statements")
        return [text for (text,) in cursor.fetchall() if "INSERT INTO \"explainer_traceevent\"" in text]


def _backend_pid() -> int:
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_backend_pid()")
        return cursor.fetchone()[0]


def _admin() -> psycopg.Connection:
    """A connection of the test's own to the same database, beside Django's."""
    params = connection.get_connection_params()
    return psycopg.connect(dbname=connection.settings_dict["NAME"], host=params.get("host"), port=params.get("port"),
                           user=params.get("user"), autocommit=True)


def test_an_event_after_the_connection_died_while_idle_is_accepted(alice):
    tenant, _ = alice
    event_accept(tenant=tenant, event=validate_event(completion("idle", tokens=["a", "b"])))
    with _admin() as admin:
        admin.execute("SELECT pg_terminate_backend(%s)", [_backend_pid()])
    connection.health_check_done = False  # as at the start of a request: a ping would have found it dead
    event_accept(tenant=tenant, event=validate_event(activations("idle", rows=2, layer=3)))
    trace = Trace.objects.get(trace_id="idle")
    assert (trace.layers, trace.rows_extent) == ([3], 2)
    assert TraceEvent.objects.filter(trace=trace).count() == 2


@pytest.mark.timeout(60)  # run again on a new connection, the statement would wait for the lock for ever
def test_a_statement_that_fails_on_a_live_connection_is_not_run_again(alice):
    tenant, _ = alice
    event_accept(tenant=tenant, event=validate_event(completion("live", tokens=["a", "b"])))
    backend = _backend_pid()
    with _admin() as admin, admin.transaction():
        admin.execute("SELECT 1 FROM explainer_trace WHERE trace_id = 'live' FOR UPDATE")  # the event's UPDATE waits
        with connection.cursor() as cursor:
            cursor.execute("SET statement_timeout = 200")
        with pytest.raises(OperationalError, match="statement timeout"):
            event_accept(tenant=tenant, event=validate_event(activations("live", rows=2, layer=3)))
    with connection.cursor() as cursor:
        cursor.execute("RESET statement_timeout")
    assert _backend_pid() == backend  # the same connection: not closed and run again
    assert not TraceEvent.objects.filter(trace__trace_id="live", event_type="activations").exists()


def test_accept_statements_are_prepared_once_per_connection(alice):
    tenant, _ = alice
    event_accept(tenant=tenant, event=validate_event(completion("prepared", tokens=["a", "b"])))
    _accept_layers(tenant, "prepared", range(6))
    assert len(_prepared_inserts()) >= 1


def test_without_prepared_statements_events_are_accepted_the_same(alice):
    """`DB_PREPARED_STATEMENTS=0` (a pooler in transaction mode) leaves psycopg's `prepare_threshold` unset."""
    tenant, _ = alice
    connection.ensure_connection()
    connection.connection.prepare_threshold = None
    event_accept(tenant=tenant, event=validate_event(completion("unprepared", tokens=["a", "b"])))
    _accept_layers(tenant, "unprepared", range(6))
    assert _prepared_inserts() == []
    assert Trace.objects.get(trace_id="unprepared").layers == list(range(6))


def test_event_payloads_are_stored_without_a_compression_attempt():
    with connection.cursor() as cursor:
        cursor.execute("SELECT attstorage FROM pg_attribute WHERE attrelid = 'explainer_traceevent'::regclass "
                       "AND attname = 'payload'")
        assert cursor.fetchone() == ("e",)  # EXTERNAL: out of line past 2 kB, never compressed
