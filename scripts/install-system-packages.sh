#!/usr/bin/env bash
# Installs the Debian packages the stack runs on when they are missing: Prometheus (+promtool),
# Alertmanager (+amtool), the PostgreSQL server binaries (for a private demo/test server) and
# VictoriaMetrics (+vmalert, for the second-backend tests) and Chromium + chromedriver (UI browser test).
# Only root can install; anyone else gets the exact command to run.
set -euo pipefail

missing=()
command -v prometheus >/dev/null 2>&1 && command -v promtool >/dev/null 2>&1 || missing+=(prometheus)
command -v prometheus-alertmanager >/dev/null 2>&1 && command -v amtool >/dev/null 2>&1 \
  || missing+=(prometheus-alertmanager)
ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || missing+=(postgresql)
# VictoriaMetrics single node + vmalert: the second Prometheus-API backend of the integration tests.
command -v victoria-metrics >/dev/null 2>&1 && command -v vmalert >/dev/null 2>&1 || missing+=(victoria-metrics)
# Debian's Chromium and its driver: the UI's browser test (never a downloaded browser).
command -v chromium >/dev/null 2>&1 || missing+=(chromium)
command -v chromedriver >/dev/null 2>&1 || missing+=(chromium-driver)

if [ ${#missing[@]} -eq 0 ]; then
  exit 0
fi
if [ "$(id -u)" -ne 0 ]; then
  echo "missing Debian packages: ${missing[*]}" >&2
  echo "run: sudo apt-get update && sudo apt-get install -y --no-install-recommends ${missing[*]}" >&2
  exit 1
fi
echo "installing Debian packages: ${missing[*]}"
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
# Debian's packages start daemons on their default ports where an init system runs; the stack
# starts its own processes on free ports, so stop any that came up.
for service in prometheus prometheus-alertmanager prometheus-node-exporter victoria-metrics; do
  (command -v systemctl >/dev/null 2>&1 && systemctl stop "$service" 2>/dev/null) || true
done
