"""Young trace tables get statistics from the sweeper, so a trace is looked up by its unique key from the start."""
from __future__ import annotations

import pytest
from django.db import connection
from hypothesis import given
from hypothesis import strategies as st

from explainer.models import Trace
from explainer.table_stats import MIN_ROWS, YOUNG_ROWS, needs_statistics, young_tables_analyze


@pytest.mark.parametrize("analyzed, live, expected", [
    (-1, MIN_ROWS - 1, False),  # a handful of rows: planned well enough without statistics
    (-1, MIN_ROWS, True),  # never analyzed
    (0, 120, True),  # analyzed while empty, as a fresh migration leaves it
    (100, 200, False),
    (100, 201, True),
    (YOUNG_ROWS, 10 * YOUNG_ROWS, False),  # autovacuum's own thresholds serve
])
def test_when_a_table_needs_statistics(analyzed, live, expected):
    assert needs_statistics(analyzed_rows=analyzed, live_rows=live) is expected


@given(rows=st.integers(min_value=0, max_value=10 * YOUNG_ROWS))
def test_a_table_just_analyzed_needs_nothing_more(rows):
    assert not needs_statistics(analyzed_rows=rows, live_rows=rows)


def _rows_known() -> tuple[float, int]:
    """The trace table's analyzed row count (-1: never), and the live rows the cumulative statistics count."""
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_stat_force_next_flush()")  # this backend's inserts, counted now
        cursor.execute("SELECT c.reltuples, s.n_live_tup FROM pg_stat_user_tables s JOIN pg_class c "
                       "ON c.oid = s.relid WHERE s.relname = 'explainer_trace'")
        return cursor.fetchone()


def _lookup_index(tenant_id: int) -> str:
    with connection.cursor() as cursor:
        cursor.execute("EXPLAIN SELECT id FROM explainer_trace WHERE tenant_id = %s AND trace_id = 'young-7'",
                       [tenant_id])
        return "\n".join(line for (line,) in cursor.fetchall())


@pytest.mark.django_db(transaction=True)
@pytest.mark.skipif("connection.vendor != 'postgresql'", reason="PostgreSQL's planner statistics")
def test_a_young_trace_table_is_analyzed_once_it_outgrows_its_statistics(make_tenant):
    tenant, _ = make_tenant("young")
    analyzed, _ = _rows_known()
    count = 2 * int(max(analyzed, 0)) + 2000  # enough rows that an index beats reading the table
    Trace.objects.bulk_create(Trace(tenant=tenant, trace_id=f"young-{i}") for i in range(count))
    assert needs_statistics(analyzed_rows=analyzed, live_rows=_rows_known()[1])
    assert "explainer_trace" in young_tables_analyze()
    assert _rows_known()[0] == count
    assert "trace_unique_per_tenant" in _lookup_index(tenant.pk)
    assert "explainer_trace" not in young_tables_analyze()  # until it doubles again
