#!/usr/bin/env bash
# Starts a throwaway PostgreSQL cluster on 127.0.0.1 and prints its SQLAlchemy URL.
# Usage: .ci/postgres.sh [PORT]   (installs Debian's postgresql package when missing)
set -euo pipefail
port="${1:-55432}"
if ! ls /usr/lib/postgresql/*/bin/pg_ctl >/dev/null 2>&1; then
  apt-get update -qq >&2
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql >&2
fi
bin=$(dirname "$(ls -d /usr/lib/postgresql/*/bin/pg_ctl | sort -V | tail -n 1)")
data=$(mktemp -d /tmp/dora-pg.XXXXXX)
chown postgres:postgres "$data"
as_postgres() { if [ "$(id -u)" = 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi; }
as_postgres "$bin/initdb" -D "$data" -U postgres -A trust >/dev/null
as_postgres "$bin/pg_ctl" -D "$data" -l "$data/server.log" -w \
  -o "-h 127.0.0.1 -p $port -k $data -c fsync=off -c max_connections=200" start >&2
as_postgres "$bin/createdb" -h 127.0.0.1 -p "$port" -U postgres dora_test
as_postgres "$bin/createdb" -h 127.0.0.1 -p "$port" -U postgres dagster_test
echo "postgresql+psycopg://postgres@127.0.0.1:$port/dora_test"
