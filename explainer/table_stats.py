"""Statistics for the trace tables while they are young, so a trace is looked up by its unique key from the start.

PostgreSQL estimates one row for every index condition on a table it has no statistics for. Looking a trace up by
(tenant, trace id) may then go through a status or tenant index instead of the unique one, and scan every open trace:
on a new deployment every event did, and its cost grew with the table (benchmarks/README.md). Autovacuum analyzes a
table only at its next round, about a minute after the first rows (`autovacuum_naptime`). The sweeper, every few
seconds, analyzes a trace table that has grown past twice the rows it was last analyzed with, while it is small: a
handful of quick ANALYZEs as it grows, then autovacuum's own thresholds serve.
"""
from __future__ import annotations

from django.db import connection

from .models import Trace, TraceEvent

TABLES = (Trace, TraceEvent)
MIN_ROWS = 50  # autovacuum's own analyze threshold: fewer rows than this are planned well enough without statistics
YOUNG_ROWS = 100_000  # past this many analyzed rows the table is autovacuum's alone


def needs_statistics(*, analyzed_rows: float, live_rows: int) -> bool:
    """Whether a young table has outgrown its statistics: never analyzed (`analyzed_rows` -1) or analyzed with fewer
    than half of the rows it has now."""
    if analyzed_rows >= YOUNG_ROWS:
        return False
    return live_rows >= MIN_ROWS and live_rows > 2 * max(analyzed_rows, 0)


def young_tables_analyze() -> list[str]:
    """ANALYZE each trace table that needs statistics (PostgreSQL only); the names of those analyzed."""
    if connection.vendor != "postgresql":
        return []
    names = [model._meta.db_table for model in TABLES]
    with connection.cursor() as cursor:
        cursor.execute("SELECT s.relname, c.reltuples, s.n_live_tup FROM pg_stat_user_tables s "
                       "JOIN pg_class c ON c.oid = s.relid WHERE s.schemaname = current_schema() "
                       "AND s.relname = ANY(%s)", [names])
        stale = [name for name, analyzed, live in cursor.fetchall()
                 if needs_statistics(analyzed_rows=analyzed, live_rows=live)]
        for name in stale:
            cursor.execute(f"ANALYZE {connection.ops.quote_name(name)}")
    return stale
