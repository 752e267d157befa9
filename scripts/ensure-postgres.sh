#!/usr/bin/env bash
# The tests use the local PostgreSQL (127.0.0.1:5432, or DATABASE_URL's server) for their own
# throw-away databases. Start the machine's cluster when it is installed but down.
set -euo pipefail

if [ -n "${DATABASE_URL:-}" ]; then
  exit 0
fi
if pg_isready -q -h 127.0.0.1 -p 5432 2>/dev/null; then
  exit 0
fi
if command -v pg_ctlcluster >/dev/null 2>&1 && [ "$(id -u)" -eq 0 ]; then
  version=$(ls /etc/postgresql | sort -V | tail -n 1)
  echo "starting PostgreSQL $version (main cluster)"
  pg_ctlcluster --skip-systemctl-redirect "$version" main start
  for _ in $(seq 1 30); do
    pg_isready -q -h 127.0.0.1 -p 5432 && exit 0
    sleep 1
  done
fi
echo "PostgreSQL is not reachable on 127.0.0.1:5432; set DATABASE_URL to a server the tests may" >&2
echo "create databases on (the integration tests fail without one, by design)." >&2
exit 1
