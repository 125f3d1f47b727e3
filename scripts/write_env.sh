#!/usr/bin/env bash
# Write .env once (django-environ reads it; the environment wins over it): a generated SECRET_KEY and the database
# and Redis URLs this setup used, so every `manage.py` command in the checkout runs without extra variables.
# Usage: scripts/write_env.sh [FILE]   (default: .env at the repository root; an existing file is left alone)
set -euo pipefail
cd "$(dirname "$0")/.."
target="${1:-.env}"
if [ -f "$target" ]; then
  exit 0
fi
echo "==> writing $target (a new SECRET_KEY, the database and Redis URLs)"
umask 077
{
  echo "SECRET_KEY=$(python3 -c 'import secrets; print(secrets.token_urlsafe(48))')"
  echo "DATABASE_URL=${DATABASE_URL:-sqlite:///$(pwd)/var/db.sqlite3}"
  echo "REDIS_URL=${REDIS_URL:-redis://127.0.0.1:6379/0}"
} > "$target"
