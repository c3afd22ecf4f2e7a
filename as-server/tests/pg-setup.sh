#!/usr/bin/env bash
# Prepares a local PostgreSQL for the store tests, idempotently:
#   installs the Debian package if missing, starts the cluster, creates the role and the
#   database, and prints the URL on stdout (last line):
#     TEST_POSTGRES_URL=postgres://iptv:iptv@127.0.0.1:5432/iptv_test
# Usage:  export $(bash as-server/tests/pg-setup.sh | tail -n1)
#         cargo test -p as-server --test store
# Needs root (apt-get, su). Only listens on localhost (the Debian default).
set -euo pipefail

PG_USER="${PG_TEST_USER:-iptv}"
PG_PASS="${PG_TEST_PASSWORD:-iptv}"
PG_DB="${PG_TEST_DB:-iptv_test}"

log() { echo "pg-setup: $*" >&2; }

if ! command -v pg_ctlcluster >/dev/null 2>&1 || ! ls /usr/lib/postgresql/*/bin/postgres >/dev/null 2>&1; then
    log "installing postgresql"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq >&2
    apt-get install -y -qq postgresql >&2
fi

VERSION="$(ls /usr/lib/postgresql | sort -V | tail -n1)"
CLUSTER=main

if ! pg_lsclusters -h | awk '{print $1" "$2}' | grep -qx "$VERSION $CLUSTER"; then
    log "creating cluster $VERSION/$CLUSTER"
    pg_createcluster "$VERSION" "$CLUSTER" >&2
fi

if ! pg_lsclusters -h | awk -v v="$VERSION" -v c="$CLUSTER" '$1==v && $2==c {print $4}' | grep -q online; then
    log "starting cluster $VERSION/$CLUSTER"
    pg_ctlcluster "$VERSION" "$CLUSTER" start >&2
fi

PORT="$(pg_lsclusters -h | awk -v v="$VERSION" -v c="$CLUSTER" '$1==v && $2==c {print $3}')"

psql_admin() { su postgres -c "psql -p $PORT -v ON_ERROR_STOP=1 -qtAX $*"; }

# Wait (bounded) until the server accepts connections.
for _ in $(seq 1 50); do
    if su postgres -c "pg_isready -q -h 127.0.0.1 -p $PORT"; then break; fi
    sleep 0.2
done
su postgres -c "pg_isready -q -h 127.0.0.1 -p $PORT" || { log "server not ready on port $PORT"; exit 1; }

if [ "$(psql_admin "-c \"SELECT 1 FROM pg_roles WHERE rolname='$PG_USER'\"")" != "1" ]; then
    log "creating role $PG_USER"
    psql_admin "-c \"CREATE ROLE $PG_USER LOGIN PASSWORD '$PG_PASS'\""
fi
if [ "$(psql_admin "-c \"SELECT 1 FROM pg_database WHERE datname='$PG_DB'\"")" != "1" ]; then
    log "creating database $PG_DB"
    psql_admin "-c \"CREATE DATABASE $PG_DB OWNER $PG_USER\""
fi

URL="postgres://$PG_USER:$PG_PASS@127.0.0.1:$PORT/$PG_DB"
# Check the URL works with a password login over TCP.
PGPASSWORD="$PG_PASS" psql "$URL" -qtAX -c "SELECT 1" >/dev/null
log "ready: $URL"
echo "TEST_POSTGRES_URL=$URL"
