#!/usr/bin/env bash
# Install (Debian packages) and start a local PostgreSQL for the store's tests, then
# print the URL for ONCOLOOP_TEST_PG_URL on stdout (everything else goes to stderr).
# Idempotent: a second run finds the server installed and running and only prints the URL.
#   export ONCOLOOP_TEST_PG_URL=$(bash scripts/ci_postgres.sh)
set -euo pipefail
db=${ONCOLOOP_PG_DB:-oncoloop_test}
user=${ONCOLOOP_PG_USER:-oncoloop}
password=${ONCOLOOP_PG_PASSWORD:-oncoloop}
sudo=""
[ "$(id -u)" -eq 0 ] || sudo="sudo"

if ! ls /usr/lib/postgresql/*/bin/postgres >/dev/null 2>&1 || ! command -v pg_ctlcluster >/dev/null; then
  echo "ci_postgres: installing PostgreSQL from Debian's packages" >&2
  $sudo apt-get update -qq >&2
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq postgresql >&2
fi
version=$(ls /usr/lib/postgresql | sort -V | tail -1)
if ! pg_lsclusters -h | awk '{print $1, $2}' | grep -qx "$version main"; then
  $sudo pg_createcluster "$version" main >&2
fi
if ! $sudo pg_ctlcluster "$version" main status >/dev/null 2>&1; then
  $sudo pg_ctlcluster "$version" main start >&2
fi
port=$(pg_lsclusters -h | awk -v v="$version" '$1 == v && $2 == "main" {print $3}')

psql_admin() { $sudo runuser -u postgres -- psql -p "$port" -v ON_ERROR_STOP=1 -qtA "$@"; }
for _ in $(seq 30); do psql_admin -c "SELECT 1" >/dev/null 2>&1 && break; sleep 1; done
if [ "$(psql_admin -c "SELECT 1 FROM pg_roles WHERE rolname = '$user'")" != "1" ]; then
  psql_admin -c "CREATE ROLE $user LOGIN PASSWORD '$password'" >&2
fi
if [ "$(psql_admin -c "SELECT 1 FROM pg_database WHERE datname = '$db'")" != "1" ]; then
  psql_admin -c "CREATE DATABASE $db OWNER $user" >&2
fi
echo "postgresql+psycopg://$user:$password@127.0.0.1:$port/$db"
