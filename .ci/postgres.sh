#!/usr/bin/env bash
# A throwaway PostgreSQL cluster for the tests and benches.
#
#   .ci/postgres.sh start   installs `postgresql` from Debian when missing, creates a
#                           cluster in $PGDATA_DIR (default /tmp/sessionkv-pg), starts it
#                           as the `postgres` user on 127.0.0.1:$PGPORT (default 54329)
#                           and prints its URL on stdout (the last line)
#   .ci/postgres.sh stop    stops it and removes the data directory
#   .ci/postgres.sh url     prints the URL
#
# The server refuses to run as root, hence `postgres`. Trust authentication on
# loopback only: for tests, never for data that matters.
set -euo pipefail

PGPORT="${PGPORT:-54329}"
PGDATA_DIR="${PGDATA_DIR:-/tmp/sessionkv-pg}"
URL="postgres://postgres@127.0.0.1:${PGPORT}/postgres"

bindir() {
  local dir
  dir=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n1 || true)
  [ -n "$dir" ] && [ -x "$dir/pg_ctl" ] && echo "$dir"
}

as_postgres() {
  if [ "$(id -un)" = postgres ]; then
    "$@"
  else
    su postgres -s /bin/sh -c "$(printf '%q ' "$@")"
  fi
}

start() {
  local bin
  if ! bin=$(bindir); then
    echo "installing postgresql from Debian" >&2
    (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql) \
      >/dev/null 2>&1 || { echo "could not install postgresql" >&2; exit 1; }
    bin=$(bindir) || { echo "postgresql installed but pg_ctl not found" >&2; exit 1; }
  fi
  if "$bin/pg_isready" -q -h 127.0.0.1 -p "$PGPORT" -t 2; then
    echo "$URL"
    return
  fi
  # Not answering: a server killed with its session may have left its pid file.
  if [ -f "$PGDATA_DIR/postmaster.pid" ]; then
    local pid
    pid=$(head -n1 "$PGDATA_DIR/postmaster.pid")
    for _ in $(seq 50); do
      if ! kill -0 "$pid" 2>/dev/null || ps -o stat= -p "$pid" | grep -q '^Z'; then break; fi
      sleep 0.1
    done
    if ! kill -0 "$pid" 2>/dev/null || ps -o stat= -p "$pid" | grep -q '^Z'; then
      rm -f "$PGDATA_DIR/postmaster.pid" "/tmp/.s.PGSQL.$PGPORT.lock"
    fi
  fi
  if [ ! -f "$PGDATA_DIR/PG_VERSION" ]; then
    rm -rf "$PGDATA_DIR"
    mkdir -p "$PGDATA_DIR"
    chown postgres: "$PGDATA_DIR" 2>/dev/null || true
    as_postgres "$bin/initdb" -D "$PGDATA_DIR" -A trust -U postgres --no-sync >/dev/null
  fi
  # synchronous_commit=off: commits do not wait for the WAL flush, the durability of
  # SQLite's WAL + synchronous=NORMAL that the files backend uses (fair for the bench).
  as_postgres "$bin/pg_ctl" -D "$PGDATA_DIR" -l "$PGDATA_DIR/server.log" -w -t 60 \
    -o "-p $PGPORT -k /tmp -c listen_addresses=127.0.0.1 -c max_connections=200 -c synchronous_commit=off" \
    start >/dev/null
  echo "$URL"
}

stop() {
  local bin
  bin=$(bindir) || return 0
  if [ -f "$PGDATA_DIR/postmaster.pid" ]; then
    as_postgres "$bin/pg_ctl" -D "$PGDATA_DIR" -m fast -w stop >/dev/null || true
  fi
  rm -rf "$PGDATA_DIR"
}

case "${1:-}" in
  start) start ;;
  stop) stop ;;
  url) echo "$URL" ;;
  *)
    echo "usage: $0 start|stop|url" >&2
    exit 2
    ;;
esac
