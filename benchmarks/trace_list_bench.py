"""Benchmark: the admin's trace list over 100,000 traces on PostgreSQL.

Workload (issue 11, "fast on 100k traces"): 100k traces over 20 tenants, 90% complete with an explanation, 5 model
names, both granularities, created over 60 days. Timed (median of --runs requests through Django's test client,
whole request: queries and rendering): the first page for a superuser and for a staff user confined to one tenant,
with each filter, a search by trace id, and page 100. Each line also gives the number of SQL queries, which does
not grow with the number of rows (no query per row).

Run: DATABASE_URL=postgres://postgres@127.0.0.1:5432/bench DEV_MODE=1 .venv/bin/python benchmarks/trace_list_bench.py
(a throwaway database `test_<name>` is created and dropped).
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from datetime import timedelta
from pathlib import Path
from urllib.parse import urlencode

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run as a script from a checkout
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "hypergraph_site.settings")
os.environ.setdefault("DEV_MODE", "1")

import django  # noqa: E402

django.setup()

from django.contrib.auth import get_user_model  # noqa: E402
from django.db import connection  # noqa: E402
from django.test import Client  # noqa: E402
from django.test.utils import CaptureQueriesContext, setup_test_environment  # noqa: E402
from django.utils import timezone  # noqa: E402

from explainer.models import Explanation, StaffTenant, Tenant, Trace  # noqa: E402

N_TRACES, N_TENANTS, BATCH = 100_000, 20, 5_000
DOCUMENT = {"network-type": "directed", "meta": {"version": "hif-1"}, "nodes": [], "incidences": []}


def populate() -> Tenant:
    tenants = Tenant.objects.bulk_create([Tenant(slug=f"tenant-{t}", name=f"Tenant {t}") for t in range(N_TENANTS)])
    now = timezone.now()
    for start in range(0, N_TRACES, BATCH):
        traces = Trace.objects.bulk_create([
            Trace(tenant=tenants[n % N_TENANTS], trace_id=f"req-{n:06d}",
                  status="complete" if n % 10 else "failed", stage="persist" if n % 10 else "attribute",
                  granularity="token" if n % 3 else "sentence", model_name=f"model-{n % 5}",
                  timings={"load": 0.01, "sae_decode": 0.2, "attribute": 0.5, "build": 0.02, "persist": 0.01},
                  finished_at=now - timedelta(minutes=n))
            for n in range(start, min(start + BATCH, N_TRACES))
        ])
        Explanation.objects.bulk_create([
            Explanation(trace=t, document=DOCUMENT, size_bytes=2048, node_count=40, incidence_count=120)
            for t in traces if t.status == "complete"
        ])
    with connection.cursor() as cursor:  # spread creation times over 60 days, newest = highest id
        cursor.execute("UPDATE explainer_trace SET created = now() - (%s - id) * interval '52 seconds'", [N_TRACES])
        cursor.execute("ANALYZE")
    return tenants[3]


def timed(client: Client, url: str, runs: int) -> tuple[float, int, int]:
    client.get(url)
    times = []
    for _ in range(runs):
        with CaptureQueriesContext(connection) as queries:
            start = time.perf_counter()
            response = client.get(url)
            times.append((time.perf_counter() - start) * 1000)
    assert response.status_code == 200, (url, response.status_code)
    return statistics.median(times), len(queries), response.content.count(b'class="field-trace_id"')


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=7)
    args = parser.parse_args()
    if connection.vendor != "postgresql":
        sys.exit("set DATABASE_URL to a PostgreSQL server (a test database is created there and dropped)")
    setup_test_environment()
    old_name = connection.creation.create_test_db(verbosity=0, autoclobber=True)
    try:
        started = time.perf_counter()
        tenant = populate()
        print(f"trace_list_bench: {Trace.objects.count()} traces, {Explanation.objects.count()} explanations, "
              f"{N_TENANTS} tenants (populated in {time.perf_counter() - started:.0f} s); {os.cpu_count()} cores, "
              f"load average {os.getloadavg()[0]:.2f}; median of {args.runs} requests")
        users = get_user_model().objects
        root, staff = Client(), Client()
        root.force_login(users.create_superuser("root", password="x"))
        scoped = users.create_user("staff", password="x", is_staff=True)
        StaffTenant.objects.create(user=scoped, tenant=tenant)
        staff.force_login(scoped)
        base = "/admin/explainer/trace/"
        midnight = timezone.localtime().replace(hour=0, minute=0, second=0, microsecond=0).isoformat()
        cases = [
            ("superuser", root, ""), ("superuser", root, "?status__exact=failed"),
            ("superuser", root, f"?tenant__id__exact={tenant.pk}"), ("superuser", root, "?granularity__exact=sentence"),
            ("superuser", root, "?model_name=model-3"), ("superuser", root, "?" + urlencode({"created__gte": midnight})),
            ("superuser", root, "?q=req-0421"), ("superuser", root, "?p=100"),
            ("tenant staff", staff, ""), ("tenant staff", staff, "?status__exact=complete&model_name=model-3"),
            ("tenant staff", staff, "?q=req-0421"),
        ]
        print(f"{'user':<13} {'query string':<52} {'ms':>7} {'queries':>7} {'rows':>5}")
        for who, client, query in cases:
            ms, count, rows = timed(client, base + query, args.runs)
            print(f"{who:<13} {query or '(first page)':<52} {ms:>7.1f} {count:>7} {rows:>5}")
    finally:
        connection.creation.destroy_test_db(old_name, verbosity=0)


if __name__ == "__main__":
    main()
