"""Settings of the load benchmark's web server: the project's own, plus two bench-only views (`bench_urls`).

Everything else (database, middleware, authentication of /ingest) is exactly what production runs, so the three
targets of `load_bench.py` are measured on the same gunicorn, the same PostgreSQL and the same request path.
"""
from hypergraph_site.settings import *  # noqa: F401,F403

ROOT_URLCONF = "benchmarks.bench_urls"
