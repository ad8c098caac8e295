#!/usr/bin/env bash
# `walwarden migrate` against the tutorial's pipeline typed by hand, on the same
# two servers in the same run:
#   by hand:   pg_dumpall -c --if-exists | gzip -c > FILE
#              gunzip -c FILE | psql -X -v ON_ERROR_STOP=0 > LOG 2>&1
#   walwarden: migrate --dump FILE (dump + load timed inside; the preflight and
#              the row-count comparison are reported apart, as they are extra work)
# Source: PostgreSQL 15 with `pgbench -i -s SCALE` plus a second database;
# destination: PostgreSQL 16. Both pg_dumpall runs use 16's binary. Each load
# replaces what the previous one loaded (pg_dumpall -c), so every run does the
# same work; the contenders alternate to spread cache and noise evenly.
#
#   cargo build && benches/migrate.sh
#
# Knobs: WALWARDEN_BENCH_SCALE (10), WALWARDEN_BENCH_RUNS (2), WALWARDEN_BIN
# (target/debug/walwarden; dependencies such as flate2 are built with
# opt-level 2 in the dev profile), WALWARDEN_PG15_BIN, WALWARDEN_PG16_BIN.
# A benchmark, not a test: it checks only that every run exits 0.
set -euo pipefail
cd "$(dirname "$0")/.."

SCALE="${WALWARDEN_BENCH_SCALE:-10}"
RUNS="${WALWARDEN_BENCH_RUNS:-2}"
BIN="${WALWARDEN_BIN:-target/debug/walwarden}"
PG15="${WALWARDEN_PG15_BIN:-/usr/lib/postgresql/15/bin}"
PG16="${WALWARDEN_PG16_BIN:-/var/cache/walwarden/pg/16/bin}"
PGUSER_OS="${WALWARDEN_TEST_PG_USER:-postgres}"

DIR="$(mktemp -d /tmp/walwarden-bench-migrate-XXXXXX)"
as_pg() {
    if [[ "$(id -u)" == 0 ]]; then runuser -u "$PGUSER_OS" -- "$@"; else "$@"; fi
}
[[ "$(id -u)" == 0 ]] && chown "$PGUSER_OS" "$DIR"
cleanup() {
    for d in src dst; do
        [[ -f "$DIR/$d/postmaster.pid" ]] && as_pg "$([[ $d == src ]] && echo "$PG15" || echo "$PG16")/pg_ctl" -D "$DIR/$d" -m immediate -w stop >/dev/null || true
    done
    rm -rf "$DIR"
}
trap cleanup EXIT

port() { echo $((20000 + RANDOM % 40000)); }
SRC_PORT=$(port)
DST_PORT=$(port)
start() { # bin dir port
    as_pg "$1/initdb" -D "$DIR/$2" -U postgres -A trust -E UTF8 --locale=C --no-sync >/dev/null
    printf "listen_addresses = ''\nport = %s\nunix_socket_directories = '%s'\n" "$3" "$DIR" >>"$DIR/$2/postgresql.conf"
    as_pg "$1/pg_ctl" -D "$DIR/$2" -l "$DIR/$2.log" -w start >/dev/null
}
start "$PG15" src "$SRC_PORT"
start "$PG16" dst "$DST_PORT"
SRC="host=$DIR port=$SRC_PORT user=postgres"
DST="host=$DIR port=$DST_PORT user=postgres"

echo "source: pgbench -i -s $SCALE and a second database…" >&2
"$PG15/pgbench" -i -q -s "$SCALE" -d "$SRC dbname=postgres" >/dev/null 2>&1
"$PG15/psql" -X -q -d "$SRC dbname=postgres" -c "create database second"
"$PG15/psql" -X -q -d "$SRC dbname=second" -c "create schema s; create table s.t as select g, md5(g::text) from generate_series(1, 100000) g"

now() { date +%s.%N; }
secs() { python3 -c "import sys; print(f'{float(sys.argv[2]) - float(sys.argv[1]):.2f}')" "$1" "$2"; }

printf 'run  contender  dump_s  load_s  dump+load_s  total_s  dump_bytes\n'
for run in $(seq 1 "$RUNS"); do
    # walwarden
    t0=$(now)
    "$BIN" migrate --from "$SRC" --to "$DST" --from-bin "$PG15" --to-bin "$PG16" \
        --dump "$DIR/w$run.sql.gz" --yes --accept-errors --json >"$DIR/w$run.json"
    t1=$(now)
    python3 - "$DIR/w$run.json" "$run" "$(secs "$t0" "$t1")" <<'EOF'
import json, sys
m = json.load(open(sys.argv[1]))["migration"]
d, l = m["dump"]["seconds"], m["load"]["seconds"]
print(f'{sys.argv[2]:<4} walwarden  {d:6.2f}  {l:6.2f}  {d + l:11.2f}  {float(sys.argv[3]):7.2f}  {m["dump"]["file_bytes"]}')
EOF
    # by hand
    t0=$(now)
    PGDATABASE=postgres "$PG16/pg_dumpall" -c --if-exists -d "$SRC" | gzip -c >"$DIR/m$run.sql.gz"
    t1=$(now)
    gunzip -c "$DIR/m$run.sql.gz" | "$PG16/psql" -X -v ON_ERROR_STOP=0 -d "$DST dbname=postgres" >"$DIR/m$run.log" 2>&1
    t2=$(now)
    printf '%-4s by-hand    %6s  %6s  %11s  %7s  %s\n' "$run" "$(secs "$t0" "$t1")" "$(secs "$t1" "$t2")" \
        "$(secs "$t0" "$t2")" "$(secs "$t0" "$t2")" "$(stat -c %s "$DIR/m$run.sql.gz")"
done
