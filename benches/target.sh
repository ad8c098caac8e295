#!/usr/bin/env bash
# `walwarden check --target` against what an engineer types by hand to see the
# same things, on the same target in the same run:
#   by hand:   ssh TARGET psql -c "select ... from pg_stat_archiver"  (settings + counters)
#              ssh TARGET tail -n 4000 LOG | grep -A1 'archive command failed'
#   one login: both of the above chained in one ssh command
#   walwarden: check --target --json CLIENT (one login: psql as JSON, then the log's tail,
#              parsed and diagnosed; includes the local catalog scan of the client)
# The target is a PostgreSQL 15 on a unix socket and a throwaway sshd on
# 127.0.0.1 (its own host key, client key and authorized_keys in a temp dir),
# logging in as the current user (root: PermitRootLogin prohibit-password).
#
#   cargo build && benches/target.sh
#
# Knobs: WALWARDEN_BENCH_RUNS (10), WALWARDEN_BIN (target/debug/walwarden),
# WALWARDEN_PG15_BIN. A benchmark, not a test: it checks only that every run exits.
set -euo pipefail
cd "$(dirname "$0")/.."

RUNS="${WALWARDEN_BENCH_RUNS:-10}"
BIN="${WALWARDEN_BIN:-target/debug/walwarden}"
PG15="${WALWARDEN_PG15_BIN:-/usr/lib/postgresql/15/bin}"
PGUSER_OS="${WALWARDEN_TEST_PG_USER:-postgres}"
ME="$(id -un)"

DIR="$(mktemp -d /tmp/walwarden-bench-target-XXXXXX)"
chmod 755 "$DIR"
as_pg() {
    if [[ "$(id -u)" == 0 ]]; then runuser -u "$PGUSER_OS" -- "$@"; else "$@"; fi
}
SSHD_PID=""
cleanup() {
    [[ -n "$SSHD_PID" ]] && kill "$SSHD_PID" 2>/dev/null || true
    [[ -f "$DIR/pg/data/postmaster.pid" ]] && as_pg "$PG15/pg_ctl" -D "$DIR/pg/data" -m immediate -w stop >/dev/null || true
    rm -rf "$DIR"
}
trap cleanup EXIT

port() { echo $((20000 + RANDOM % 40000)); }
PGPORT=$(port)
SSHPORT=$(port)

# The target's PostgreSQL, archiving into the client's folder.
mkdir -p "$DIR/pg" "$DIR/root/shop/wal" "$DIR/root/shop/base"
[[ "$(id -u)" == 0 ]] && chown -R "$PGUSER_OS" "$DIR/pg" "$DIR/root"
as_pg "$PG15/initdb" -D "$DIR/pg/data" -U postgres -A trust -E UTF8 --locale=C --no-sync >/dev/null
W="$DIR/root/shop/wal"
cat >>"$DIR/pg/data/postgresql.conf" <<EOF
listen_addresses = ''
port = $PGPORT
unix_socket_directories = '$DIR/pg'
wal_level = replica
archive_mode = on
archive_timeout = 3600
archive_command = 'test ! -f $W/%f.gz && gzip -c %p > $W/%f.gz'
EOF
as_pg "$PG15/pg_ctl" -D "$DIR/pg/data" -l "$DIR/pg/server.log" -w start >/dev/null
for _ in 1 2 3; do
    "$PG15/psql" -X -q -h "$DIR/pg" -p "$PGPORT" -U postgres -c "create table if not exists t(g int); insert into t select generate_series(1,1000); select pg_switch_wal()" >/dev/null
done
sleep 1

# A throwaway sshd on loopback.
mkdir -p "$DIR/ssh" /run/sshd
ssh-keygen -q -t ed25519 -N '' -f "$DIR/ssh/host" -C bench
ssh-keygen -q -t ed25519 -N '' -f "$DIR/ssh/client" -C bench
cp "$DIR/ssh/client.pub" "$DIR/ssh/authorized_keys"
cat >"$DIR/ssh/sshd_config" <<EOF
HostKey $DIR/ssh/host
PidFile $DIR/ssh/sshd.pid
AuthorizedKeysFile $DIR/ssh/authorized_keys
StrictModes no
PermitRootLogin prohibit-password
PasswordAuthentication no
KbdInteractiveAuthentication no
UsePAM no
AllowUsers $ME
EOF
/usr/sbin/sshd -D -e -f "$DIR/ssh/sshd_config" -p "$SSHPORT" -o ListenAddress=127.0.0.1 2>"$DIR/ssh/log" &
SSHD_PID=$!
sleep 1
echo "[127.0.0.1]:$SSHPORT $(cut -d' ' -f1,2 "$DIR/ssh/host.pub")" >"$DIR/ssh/known_hosts"

PSQL="$PG15/psql -h $DIR/pg -p $PGPORT -U postgres"
cat >"$DIR/walwarden.toml" <<EOF
root = "$DIR/root"
[clients.shop.target]
host = "127.0.0.1"
port = $SSHPORT
user = "$ME"
known_hosts = "$DIR/ssh/known_hosts"
identity = "$DIR/ssh/client"
psql_command = "$PSQL"
log_file = "$DIR/pg/server.log"
EOF
SSH=(ssh -F /dev/null -o BatchMode=yes -o StrictHostKeyChecking=yes
     -o "UserKnownHostsFile=$DIR/ssh/known_hosts" -i "$DIR/ssh/client" -p "$SSHPORT" "$ME@127.0.0.1")
SQL="select current_setting('archive_mode'), current_setting('archive_timeout'), current_setting('archive_command'), archived_count, last_archived_wal, last_archived_time, failed_count, last_failed_wal, last_failed_time from pg_stat_archiver"

now() { date +%s.%N; }
ms() { python3 -c "import sys; print(f'{(float(sys.argv[2]) - float(sys.argv[1])) * 1000:.0f}')" "$1" "$2"; }

printf 'run  walwarden_ms  by_hand_ms  one_login_ms\n'
for run in $(seq 1 "$RUNS"); do
    t0=$(now)
    "$BIN" --config "$DIR/walwarden.toml" check --target --json shop >"$DIR/w.json" || true
    t1=$(now)
    "${SSH[@]}" "$PSQL -X -A -t -c \"$SQL\"" >"$DIR/h.txt"
    "${SSH[@]}" "tail -n 4000 $DIR/pg/server.log | grep -A1 'archive command failed' || true" >>"$DIR/h.txt"
    t2=$(now)
    # The same two commands chained in one login, as a practised engineer would.
    "${SSH[@]}" "$PSQL -X -A -t -c \"$SQL\"; tail -n 4000 $DIR/pg/server.log | grep -A1 'archive command failed' || true" >"$DIR/h1.txt"
    t3=$(now)
    printf '%-4s %12s  %10s  %12s\n' "$run" "$(ms "$t0" "$t1")" "$(ms "$t1" "$t2")" "$(ms "$t2" "$t3")"
done
python3 - "$DIR/w.json" <<'EOF'
import json, sys
c = json.load(open(sys.argv[1]))["clients"][0]["target"]
assert c["reached"] == "true", c
print(f'walwarden saw: archived {c["state"]["archived_count"]}, failed {c["state"]["failed_count"]}, log {c["log_file"]}')
EOF
