"""Accepting an event that does not finalize its trace, on PostgreSQL, in two round trips instead of five.

The general path (`services._accept`) locks the trace row in a transaction: BEGIN, SELECT … FOR UPDATE, INSERT or
UPDATE the trace, INSERT the event, COMMIT. Most events (completions and activations) need no lock: this path reads
the trace without one, checks the event against that snapshot in Python, and then writes the trace's summary and the
event in one statement (a data-modifying CTE, atomic by itself in autocommit) whose UPDATE holds only while the
columns the checks read are still what was read. If another request changed them in between, the statement writes
nothing and the caller reads again (optimistic concurrency); a new trace is inserted `ON CONFLICT DO NOTHING`, so two
requests creating one trace cannot both win either. A trace row's values go through Django's own field preparation,
so defaults, `auto_now` and JSON adaptation stay exactly the ORM's, without the cost of a model instance; an event's
payload is stored as the canonical JSON its hash was computed over, so it is serialized once.

An activations event for a trace that exists needs no read at all: its checks are simple enough to be the UPDATE's
own condition (`trace_add_activations`); only when that condition fails does the caller read the trace to say why.
Finalizing events keep the locking path: they start a run and publish after the commit.

These statements are the whole of an event's database work, so they are prepared (`_fetchone`): parsing and planning
a data-modifying CTE cost PostgreSQL more than executing it.
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from functools import cache
from typing import Any, Literal, Mapping

from django.db import DEFAULT_DB_ALIAS, InterfaceError, OperationalError, connection, connections
from django.db.backends.base.base import BaseDatabaseWrapper
from django.db.backends.postgresql.base import ServerBindingCursor
from django.db.models import Model
from django.utils import timezone

from explainer.models import Trace, TraceEvent, TraceStatus

# The trace columns that an event's checks read; the write holds only while they are unchanged.
_READ = """
SELECT t.id, t.status, t.finalized_at IS NOT NULL, t.token_count, t.layers, t.rows_extent,
       EXISTS (SELECT 1 FROM {event} e WHERE e.trace_id = t.id AND e.event_hash = %s)
FROM {trace} t WHERE t.tenant_id = %s AND t.trace_id = %s
"""


@dataclass(frozen=True)
class TraceSnapshot:
    """What the checks of a new event need to know about its trace, read without a lock."""

    pk: int
    trace_id: str
    status: str
    finalized: bool
    token_count: int | None
    layers: list[int]
    rows_extent: int
    duplicate: bool


def trace_snapshot(*, tenant_id: int, trace_id: str, digest: str) -> TraceSnapshot | None:
    """The trace as it is now (None when it does not exist yet), and whether it already has this event."""
    sql = _READ.format(trace=Trace._meta.db_table, event=TraceEvent._meta.db_table)
    row = _fetchone(sql, [digest, tenant_id, trace_id])
    if row is None:
        return None
    pk, status, finalized, token_count, layers, rows_extent, duplicate = row
    return TraceSnapshot(pk=pk, trace_id=trace_id, status=status, finalized=finalized, token_count=token_count,
                         layers=list(_layers_field().from_db_value(layers, None, connection)),
                         rows_extent=rows_extent, duplicate=duplicate)


@dataclass(frozen=True)
class EventRow:
    """An event as it is stored: `payload_json` is the payload's canonical JSON, the text its hash covers."""

    event_type: str
    event_hash: str
    granularity: str
    payload_json: str

    def params(self) -> list:
        """Values for `_EVENT_COLUMNS`, in order."""
        received = TraceEvent._meta.get_field("received").get_db_prep_save(timezone.now(), connection)
        return [self.event_type, self.event_hash, self.granularity, self.payload_json, received]


# The columns an event row is inserted with (the trace's id comes first, from the statement itself).
_EVENT_COLUMNS = ("event_type", "event_hash", "granularity", "payload", "received")


def trace_create_with_event(*, values: Mapping[str, Any], event: EventRow) -> bool:
    """Insert a new trace (`values` by attribute name; the rest take their defaults) and its first event in one
    statement; False when the trace exists already."""
    trace_columns, trace_params = _trace_row(values)
    event_params = event.params()
    sql = (f"WITH t AS (INSERT INTO {_quoted(Trace._meta.db_table)} ({trace_columns}) "
           f"VALUES ({_placeholders(trace_params)}) ON CONFLICT DO NOTHING RETURNING id), "
           f"e AS (INSERT INTO {_quoted(TraceEvent._meta.db_table)} (trace_id, {_event_columns()}) "
           f"SELECT t.id, {_placeholders(event_params)} FROM t) "
           f"SELECT count(*) FROM t")
    return _fetchone(sql, [*trace_params, *event_params])[0] == 1


def trace_update_with_event(*, snapshot: TraceSnapshot, changes: dict, event: EventRow) -> bool:
    """Apply `changes` to the trace and insert the event in one statement, only if the trace is still as
    `snapshot` saw it (open, same summary); False when it changed meanwhile and nothing was written."""
    fields = [Trace._meta.get_field(name) for name in changes]
    updated = Trace._meta.get_field("updated")
    assignments = ", ".join(f"{_quoted(f.column)} = %s" for f in [*fields, updated])
    update_params = [f.get_db_prep_save(changes[f.name], connection) for f in fields]
    update_params.append(updated.get_db_prep_save(timezone.now(), connection))
    guard_params = [snapshot.pk, TraceStatus.OPEN, snapshot.token_count,
                    _layers_field().get_db_prep_save(snapshot.layers, connection),
                    snapshot.rows_extent]
    update = (f"UPDATE {_quoted(Trace._meta.db_table)} SET {assignments} "
              f"WHERE id = %s AND status = %s AND finalized_at IS NULL AND token_count IS NOT DISTINCT FROM %s "
              f"AND layers = %s AND rows_extent = %s RETURNING id")
    updated, _ = _update_with_event(update, [*update_params, *guard_params], event)
    return updated == 1


# The trace's layers with the event's added, sorted and distinct (what `services._summary` computes in Python).
_LAYERS_WITH = ("(SELECT coalesce(jsonb_agg(v ORDER BY v), '[]'::jsonb) FROM (SELECT jsonb_array_elements(t.layers) "
                "AS v UNION SELECT jsonb_array_elements(%s::jsonb)) AS u)")


def trace_add_activations(*, tenant_id: int, trace_id: str, layers: list[int], extent: int, max_layers: int,
                          event: EventRow) -> Literal["stored", "duplicate"] | None:
    """Add an activations event to an existing open trace in one statement, with no read first.

    The UPDATE holds only where the event passes every accept check: the trace is open, the rows end within the
    completion's tokens (`extent`), and the layers stay within `max_layers`. "stored", or "duplicate" when the trace
    already had this event (the summary it re-applied is unchanged by it); None when nothing was written — no such
    trace, or a check failed — and the caller reads the trace to find out which, and answers accordingly.
    """
    layers_json = json.dumps(sorted(set(layers)))
    update = (f"UPDATE {_quoted(Trace._meta.db_table)} AS t SET layers = {_LAYERS_WITH}, "
              f"rows_extent = GREATEST(t.rows_extent, %s), updated = %s "
              f"WHERE t.tenant_id = %s AND t.trace_id = %s AND t.status = %s AND t.finalized_at IS NULL "
              f"AND (t.token_count IS NULL OR t.token_count >= %s) AND jsonb_array_length({_LAYERS_WITH}) <= %s "
              f"RETURNING t.id")
    params = [layers_json, extent, Trace._meta.get_field("updated").get_db_prep_save(timezone.now(), connection),
              tenant_id, trace_id, TraceStatus.OPEN, extent, layers_json, max_layers]
    updated, inserted = _update_with_event(update, params, event)
    if not updated:
        return None
    return "stored" if inserted else "duplicate"


def _update_with_event(update: str, params: list, event: EventRow) -> tuple[int, int]:
    """Run `update` (an UPDATE … RETURNING id of at most one trace) and insert `event` into the trace it updated,
    in one statement; (traces updated, events inserted). An event the trace has already is not inserted again."""
    event_params = event.params()
    sql = (f"WITH t AS ({update}), "
           f"e AS (INSERT INTO {_quoted(TraceEvent._meta.db_table)} (trace_id, {_event_columns()}) "
           f"SELECT t.id, {_placeholders(event_params)} FROM t ON CONFLICT DO NOTHING RETURNING id) "
           f"SELECT (SELECT count(*) FROM t), (SELECT count(*) FROM e)")
    return _fetchone(sql, [*params, *event_params])


def _layers_field():
    return Trace._meta.get_field("layers")


def _trace_row(values: Mapping[str, Any]) -> tuple[str, list]:
    """The quoted column list and prepared values of a new trace, as `Trace(**values).save()` would insert them:
    absent fields take their defaults, and `auto_now`/`auto_now_add` dates are now."""
    columns, fields, defaults = _insert_plan(Trace)
    database = connections[DEFAULT_DB_ALIAS]  # the connection itself: `connection` is a proxy, costly per access
    now = timezone.now()
    params = []
    for field, default in zip(fields, defaults):
        if field.attname in values:
            params.append(field.get_db_prep_save(values[field.attname], database))
        else:
            params.append(field.get_db_prep_save(now, database) if default is _NOW else default)
    return columns, params


_NOW = object()  # the default of an `auto_now`/`auto_now_add` date: the time of the insert


@cache
def _insert_plan(model: type[Model]) -> tuple[str, tuple, tuple]:
    """A model's inserted fields (all but the primary key), their quoted column list and their defaults prepared for
    the database (`_NOW` for dates set on save), worked out once. Preparing two dozen defaults cost more than the rest
    of building a row; the driver only reads a prepared value, so one serves every insert."""
    database = connections[DEFAULT_DB_ALIAS]
    fields = tuple(f for f in model._meta.concrete_fields if not f.primary_key)
    defaults = tuple(_NOW if getattr(f, "auto_now", False) or getattr(f, "auto_now_add", False)
                     else f.get_db_prep_save(f.get_default(), database) for f in fields)
    return ", ".join(_quoted(f.column) for f in fields), fields, defaults


@cache
def _event_columns() -> str:
    return ", ".join(_quoted(TraceEvent._meta.get_field(name).column) for name in _EVENT_COLUMNS)


def _quoted(name: str) -> str:
    return connection.ops.quote_name(name)


def _placeholders(params: list) -> str:
    return ", ".join(["%s"] * len(params))


def _fetchone(sql: str, params: list) -> tuple:
    """Run one statement and return its row, its parameters bound on the server (sent apart from the SQL, not
    quoted into it) by a cursor of Django's own, so errors are still Django's (`IntegrityError`, `OperationalError`).

    A statement run this way is prepared on its connection after `prepare_threshold` runs (settings: on unless
    `DB_PREPARED_STATEMENTS=0`), so it is parsed and planned once per connection instead of at every event.

    The connection is not pinged first (Django's `CONN_HEALTH_CHECKS` would spend a round trip per request on it):
    a statement that fails because the connection died while idle, a database restart for instance, is run once
    more on a new one. Running one of these statements twice changes nothing: the event is unique per trace, and the
    trace's summary only takes the event's values again.
    """
    database = connections[DEFAULT_DB_ALIAS]
    try:
        return _run(database, sql, params)
    except (InterfaceError, OperationalError):
        if database.in_atomic_block or database.connection is None or database.is_usable():
            raise  # the statement itself failed (or a transaction would be lost with the connection)
        database.close()
        return _run(database, sql, params)


def _run(database: BaseDatabaseWrapper, sql: str, params: list) -> tuple:
    database.ensure_connection()
    with database.wrap_database_errors, ServerBindingCursor(database.connection) as cursor:
        cursor.execute(sql, params)
        row = cursor.fetchone()
    database.health_check_done = True  # it just worked: later queries of this request need no ping either
    return row
