"""A setting that is missing or does not parse stops a command with one line naming it, not a traceback."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[3]


def manage(*args: str, **env: str) -> subprocess.CompletedProcess:
    base = {k: v for k, v in os.environ.items() if k not in ("DEV_MODE", "SECRET_KEY", "DJANGO_SETTINGS_MODULE")}
    return subprocess.run([sys.executable, str(ROOT / "manage.py"), *args], env={**base, **env},
                          capture_output=True, text=True, timeout=60)


def test_a_missing_secret_key_is_one_line_saying_how_to_set_it():
    result = manage("create_tenant", "--help", SECRET_KEY="")  # present but empty: .env cannot fill it in
    assert result.returncode != 0
    assert result.stderr.strip().splitlines() == [result.stderr.strip()]
    assert "SECRET_KEY is not set" in result.stderr and "scripts/setup.sh" in result.stderr
    assert "Traceback" not in result.stderr


def test_a_value_that_does_not_parse_names_the_variable():
    result = manage("check", DEV_MODE="1", MAX_LAYERS="eight")
    assert result.returncode != 0 and "Traceback" not in result.stderr
    assert "MAX_LAYERS='eight' is not valid" in result.stderr


def test_the_env_file_the_setup_writes_lets_commands_run_without_variables(tmp_path):
    target = tmp_path / "env"
    written = subprocess.run(["bash", str(ROOT / "scripts" / "write_env.sh"), str(target)], capture_output=True,
                             text=True, timeout=60, env={"PATH": os.environ["PATH"]})
    assert written.returncode == 0, written.stderr
    lines = dict(line.split("=", 1) for line in target.read_text().splitlines())
    assert set(lines) == {"SECRET_KEY", "DATABASE_URL", "REDIS_URL"} and len(lines["SECRET_KEY"]) >= 50
    assert oct(target.stat().st_mode & 0o777) == "0o600"
    result = manage("check", HG_ENV_FILE=str(target))
    assert result.returncode == 0, result.stderr
    again = subprocess.run(["bash", str(ROOT / "scripts" / "write_env.sh"), str(target)], capture_output=True,
                           text=True, timeout=60)
    assert again.returncode == 0 and dict(line.split("=", 1) for line in target.read_text().splitlines()) == lines


def test_storage_settings_are_checked_at_start():
    unknown = manage("check", DEV_MODE="1", STORAGE_BACKEND="gcs")
    assert unknown.returncode != 0 and "Traceback" not in unknown.stderr
    assert "STORAGE_BACKEND='gcs' is not valid; choose one of ('local', 's3')" in unknown.stderr
    no_bucket = manage("check", DEV_MODE="1", ARTIFACT_BACKEND="s3", S3_BUCKET="")
    assert no_bucket.returncode != 0 and "S3_BUCKET is not set" in no_bucket.stderr
    assert manage("check", DEV_MODE="1", STORAGE_BACKEND="s3", S3_BUCKET="graphs").returncode == 0


def test_log_format_is_checked_at_start():
    unknown = manage("check", DEV_MODE="1", LOG_FORMAT="xml")
    assert unknown.returncode != 0 and "Traceback" not in unknown.stderr
    assert "LOG_FORMAT='xml' is not valid; choose json or console" in unknown.stderr


def test_prepared_statements_are_on_for_postgresql_unless_turned_off():
    show = "from django.conf import settings; print(settings.DATABASES['default'].get('OPTIONS', {}))"
    url = "postgres://postgres@127.0.0.1:5432/unused"
    assert "'prepare_threshold': 5" in manage("shell", "-c", show, DEV_MODE="1", DATABASE_URL=url).stdout
    off = manage("shell", "-c", show, DEV_MODE="1", DATABASE_URL=url, DB_PREPARED_STATEMENTS="0")
    assert off.returncode == 0 and "prepare_threshold" not in off.stdout
