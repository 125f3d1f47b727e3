"""The fault suite (marker `reliability`; part of the default run of scripts/test.sh, about 3.5-4.5 minutes).

It brings up its own world and touches nothing shared: a PostgreSQL cluster of its own (initdb into a temporary
folder as the `postgres` user, a free port), a redis-server of its own (no persistence), gunicorn `-w 2` and
prefork Celery workers (`-c 2`) of the project, all with default reliability settings. Tests inject real faults
under load (SIGKILL of pool processes and of the worker parent, a Redis crash and restart, `pg_ctl stop -m
immediate` for 20 s), send bounded-input and poison requests, and replay dead letters, then account for every
accepted trace from the database and over HTTP. Each prints one `[fault] ...` line with the recovery it measured
(`pytest -s` shows them).

Needs redis-server and PostgreSQL's server binaries (skipped otherwise). `RELIABILITY_SLACK_S` (default 15) is the
CI noise allowed on top of the 60 s recovery goal; `RELIABILITY_LOAD_TRACES` (at least 200) sizes the plain load.
Run alone: `DEV_MODE=1 .venv/bin/python -m pytest -s tests/reliability` (or `scripts/test.sh tests/reliability`).
"""
