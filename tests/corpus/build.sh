#!/usr/bin/env bash
# Builds ONE archive of walwarden's test corpus with real PostgreSQL, doing what
# fleets do (failover, point-in-time restore, test restore, replica rebuild, ...).
#
#   tests/corpus/build.sh SHAPE OUTDIR
#
# OUTDIR must not exist. It receives
#   OUTDIR/root/fleet/base/{base.tar.gz,pg_wal.tar.gz,backup_manifest}
#   OUTDIR/root/fleet/wal/<segment>.gz, <tli>.history.gz, ...partial.gz, .backup.gz
#   OUTDIR/facts.json     what a correct restore must reproduce (tests/support/corpus.rs reads it)
#   OUTDIR/logs/*.log     the builder servers' logs
# and is left readable (not writable) by the PostgreSQL OS user: restores read
# it, none may write into it.
#
# Shapes: straight failover pitr pitr_missing_switch test_branch inherited_targets
#         standby_base standby_base_from_standby foreign_settings new_base_on_tl2
#         new_base_on_tl2_no_history small_segments promoted_pg17
#
# Conventions (as tests/support/pg.rs):
# * PostgreSQL refuses root: as root every PostgreSQL program runs as OS user
#   $WALWARDEN_TEST_PG_USER (default postgres) through `runuser -u USER --`.
# * Binaries: $WALWARDEN_PG<major>_BIN, else /usr/lib/postgresql/<major>/bin, else
#   $WALWARDEN_PG_CACHE (default /var/cache/walwarden/pg as root)/<major>/bin.
#   Missing binaries fail the build.
# * Servers listen on a unix socket in a temp dir under /tmp only
#   (listen_addresses = ''), port and socket dir given on the command line
#   (`pg_ctl -o "-p PORT -k DIR"`), so the postgresql.conf inside the base
#   backups names no socket dir or port of this build (foreign_settings does,
#   on purpose). Every server started is stopped on exit, also on failure.
# * archive_command as the tutorial's gzip variant, written as .gz.part,
#   checked, synced, renamed (an identical file already there is a success).
#   archive_timeout stays off: the archive holds
#   exactly the segments the shape switches.
# * Data: one table fleet(id, batch, ts); rows are inserted in named batches,
#   one transaction per batch; track_commit_timestamp is on, so the last commit
#   time of each timeline is known.
set -Eeuo pipefail
shopt -s nullglob

usage() { echo "usage: $0 SHAPE OUTDIR" >&2; exit 2; }
[[ $# -eq 2 ]] || usage
SHAPE=$1
OUT=$2
CLIENT=fleet
ROOT=$OUT/root
CDIR=$ROOT/$CLIENT
BASE=$CDIR/base
WAL=$CDIR/wal
T0=$SECONDS

step() { printf '[corpus %s] %3ds %s\n' "$SHAPE" $((SECONDS - T0)) "$*" >&2; }
die() { printf '[corpus %s] ERROR: %s\n' "$SHAPE" "$*" >&2; exit 1; }

# libpq/server variables that could redirect a command; timestamps in UTC.
for v in PGHOST PGHOSTADDR PGPORT PGUSER PGDATABASE PGDATA PGOPTIONS PGSERVICE \
    PGSERVICEFILE PGPASSWORD PGPASSFILE PGSSLMODE PGCLIENTENCODING PGAPPNAME \
    PGCONNECT_TIMEOUT PGTARGETSESSIONATTRS PGSYSCONFDIR PGLOCALEDIR; do
    unset "$v"
done
export LC_ALL=C PGTZ=UTC

# ---------------------------------------------------------------------------
# Running things as the PostgreSQL user
# ---------------------------------------------------------------------------
PG_OS_USER=${WALWARDEN_TEST_PG_USER:-postgres}
if [[ $(id -u) == 0 ]]; then
    id "$PG_OS_USER" >/dev/null 2>&1 || die "OS user $PG_OS_USER does not exist (install postgresql-15)"
    as_pg() { runuser -u "$PG_OS_USER" -- "$@"; }
    give_to_pg() { chown "$PG_OS_USER:" "$@"; }
else
    as_pg() { "$@"; }
    give_to_pg() { :; }
fi

# The bin dir of PostgreSQL MAJOR (same search as tests/support/pg.rs).
pg_bin_dir() {
    local major=$1 var="WALWARDEN_PG${1}_BIN" cache dir
    local -a candidates
    if [[ -n ${!var:-} ]]; then
        candidates=("${!var}")
    else
        cache=${WALWARDEN_PG_CACHE:-}
        if [[ -z $cache ]]; then
            if [[ $(id -u) != 0 && -n ${HOME:-} ]]; then cache=$HOME/.cache/walwarden/pg; else cache=/var/cache/walwarden/pg; fi
        fi
        candidates=("/usr/lib/postgresql/$major/bin" "$cache/$major/bin")
    fi
    for dir in "${candidates[@]}"; do
        if [[ -x $dir/initdb && -x $dir/postgres && -x $dir/pg_ctl && -x $dir/pg_controldata ]]; then
            echo "$dir"
            return
        fi
    done
    die "PostgreSQL $major binaries not found in ${candidates[*]} (run .ci/fetch-pg-binaries $major or set $var)"
}

# Runs PostgreSQL program PROG of this shape's major as the PostgreSQL user.
pg() {
    local prog=$1
    shift
    as_pg env LC_ALL=C PGTZ=UTC ${PG_LIBDIR:+LD_LIBRARY_PATH=$PG_LIBDIR${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}} \
        "$PG_BIN/$prog" "$@"
}

# ---------------------------------------------------------------------------
# Servers: NAME -> $WORK/NAME/{data,server.log}, socket in $WORK/NAME
# ---------------------------------------------------------------------------
declare -A PORT
STARTED=()

cleanup() {
    local rc=$? name
    for name in "${STARTED[@]}"; do
        if [[ -f $WORK/$name/data/postmaster.pid ]]; then
            pg pg_ctl -D "$WORK/$name/data" -m immediate -w -t 60 stop >/dev/null 2>&1 ||
                echo "warning: could not stop server $name" >&2
        fi
    done
    if [[ -d ${WORK:-} ]]; then
        mkdir -p "$OUT/logs" 2>/dev/null || true
        for name in "${!PORT[@]}"; do
            [[ -f $WORK/$name/server.log ]] && cp "$WORK/$name/server.log" "$OUT/logs/$name.log" 2>/dev/null && chmod 644 "$OUT/logs/$name.log"
        done
        if [[ $rc -ne 0 ]]; then
            for name in "${!PORT[@]}"; do
                [[ -f $WORK/$name/server.log ]] || continue
                echo "--- last lines of server $name's log ---" >&2
                tail -n 25 "$WORK/$name/server.log" >&2
            done
        fi
        rm -rf "$WORK"
    fi
    exit "$rc"
}

pick_port() {
    local port _
    for _ in $(seq 100); do
        port=$((20000 + (RANDOM * 32768 + RANDOM) % 41000))
        if [[ ! -e /tmp/.s.PGSQL.$port.lock ]] && ! (: >"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then
            echo "$port"
            return
        fi
    done
    die "no free port"
}

# new_server_dir NAME: the folder of a server (data dir made by the caller).
new_server_dir() {
    mkdir "$WORK/$1"
    give_to_pg "$WORK/$1"
    PORT[$1]=$(pick_port)
}

# The tutorial's gzip archive_command into the client's wal folder, except that
# a file already archived with identical content counts as success (as
# PostgreSQL's documentation asks). The tutorial's `test ! -f` blocks a promoted
# standby for ever: after promotion it archives the segments it got from
# pg_basebackup's WAL stream, which the primary had archived already.
# The folder is named once (PostgreSQL 15 cuts the expanded command at 1023
# bytes, and the cache's paths are long).
archive_command() {
    echo "w=$WAL; if test -f \$w/%f.gz; then gunzip -c \$w/%f.gz | cmp -s - %p; else gzip -c %p > \$w/%f.gz.part && gzip -t \$w/%f.gz.part && sync \$w/%f.gz.part && mv \$w/%f.gz.part \$w/%f.gz; fi"
}

start() {
    local name=$1
    STARTED+=("$name")
    pg pg_ctl -D "$WORK/$name/data" -l "$WORK/$name/server.log" -w -t 60 \
        -o "-p ${PORT[$name]} -k $WORK/$name" start >/dev/null ||
        die "server $name did not start"
}

stop() {
    pg pg_ctl -D "$WORK/$1/data" -m fast -w -t 60 stop >/dev/null || die "server $1 did not stop"
}

psql_on() {
    local name=$1
    shift
    pg psql -X -q -A -t -v ON_ERROR_STOP=1 -h "$WORK/$name" -p "${PORT[$name]}" -U postgres -d postgres "$@"
}
sql() { psql_on "$1" -c "$2"; }

# poll NAME SQL WHAT: waits (<= 60 s) until SQL returns t on server NAME.
poll() {
    local name=$1 query=$2 what=$3 i
    for i in $(seq 600); do
        [[ $(sql "$name" "$query" 2>/dev/null) == t ]] && return 0
        sleep 0.1
    done
    die "timed out waiting for $what on $name"
}

# new_primary NAME [initdb args...]: initdb, archiving settings, start, table.
new_primary() {
    local name=$1
    shift
    new_server_dir "$name"
    pg initdb -D "$WORK/$name/data" -A trust -U postgres -E UTF8 --locale=C --no-sync "$@" >/dev/null
    cat >>"$WORK/$name/data/postgresql.conf" <<EOF

# walwarden corpus ($SHAPE): the tutorial's archiving
listen_addresses = ''
wal_level = replica
archive_mode = on
archive_command = '$(archive_command)'
autovacuum = off
track_commit_timestamp = on
log_line_prefix = '%m [%p] '
log_timezone = 'UTC'
timezone = 'UTC'
${EXTRA_CONF:-}
EOF
    start "$name"
    sql "$name" "create table fleet (id bigserial primary key, batch text not null,
                 ts timestamptz not null default clock_timestamp())"
    [[ -n ${SYSID:-} ]] || SYSID=$(controldata "$name" "Database system identifier")
    [[ -n ${SEGSIZE:-} ]] || SEGSIZE=$(controldata "$name" "Bytes per WAL segment")
}

controldata() {
    pg pg_controldata -D "$WORK/$1/data" | sed -n "s/^$2: *//p"
}

# batch NAME LABEL N: one transaction inserting N rows of batch LABEL.
batch() {
    sql "$1" "insert into fleet (batch) select '$2' from generate_series(1, $3)"
}

# switch NAME: pg_switch_wal(); prints the segment it completed.
switch() { sql "$1" "select pg_walfile_name(pg_switch_wal())"; }

wait_archived() {
    local i
    for i in $(seq 600); do
        [[ -f $WAL/$1.gz ]] && return 0
        sleep 0.1
    done
    die "segment $1 was not archived within 60 s"
}

# switch_and_archive NAME: completes the current segment and waits for its archive.
switch_and_archive() { wait_archived "$(switch "$1")"; }

# rows_json NAME: {"batch": count, ...} on server NAME.
rows_json() {
    sql "$1" "select coalesce(json_object_agg(batch, n order by batch), '{}')
              from (select batch, count(*) n from fleet group by batch) s"
}

# end_timeline NAME TLI: the server's last word on timeline TLI: completes and
# archives its segment, records the rows and the last commit, stops it.
end_timeline() {
    local name=$1 tli=$2
    rows_json "$name" >"$FACTS/tl$tli.rows"
    sql "$name" "select (pg_last_committed_xact()).timestamp" >"$FACTS/tl$tli.last_commit"
    sql "$name" "select pg_current_wal_insert_lsn()" >"$FACTS/tl$tli.end_lsn"
    switch_and_archive "$name"
    stop "$name"
    step "timeline $tli ends: $(cat "$FACTS/tl$tli.rows")"
}

# take_base NAME DIR [pg_basebackup args...]: the tutorial's base backup of server NAME.
take_base() {
    local name=$1 dir=$2
    shift 2
    pg pg_basebackup -h "$WORK/$name" -p "${PORT[$name]}" -U postgres --format=tar --gzip \
        --checkpoint=fast --label=base_backup -D "$dir" "$@"
    step "base backup of $name in $dir"
}

# make_standby PRIMARY NAME: a streaming standby made with pg_basebackup -R
# (archive_mode = on as on the primary: it archives once promoted).
make_standby() {
    local primary=$1 name=$2
    new_server_dir "$name"
    pg pg_basebackup -h "$WORK/$primary" -p "${PORT[$primary]}" -U postgres -R \
        --checkpoint=fast -D "$WORK/$name/data"
    start "$name"
    poll "$primary" "select count(*) > 0 from pg_stat_replication where state = 'streaming'" "streaming"
    step "standby $name streams from $primary"
}

# wait_replayed STANDBY LSN
wait_replayed() {
    poll "$1" "select pg_last_wal_replay_lsn() >= '$2'" "replay of $2"
}

# restore NAME TARBALL_DIR [postgresql.auto.conf lines...]: the tutorial's restore
# (base.tar.gz into DATA, pg_wal.tar.gz into DATA/pg_wal, recovery.signal,
# restore_command from the wal folder) plus the given lines; started. The
# restored server keeps the source's postgresql.conf, so it archives into the
# same wal folder, as a restored copy does in the field.
restore() {
    local name=$1 from=$2 line
    shift 2
    new_server_dir "$name"
    as_pg mkdir -m 700 "$WORK/$name/data"
    as_pg tar xzf "$from/base.tar.gz" -C "$WORK/$name/data"
    as_pg tar xzf "$from/pg_wal.tar.gz" -C "$WORK/$name/data/pg_wal"
    as_pg touch "$WORK/$name/data/recovery.signal"
    {
        echo "restore_command = 'gunzip -c $WAL/%f.gz > %p'"
        for line in "$@"; do echo "$line"; done
    } | as_pg tee -a "$WORK/$name/data/postgresql.auto.conf" >/dev/null
    start "$name"
}

wait_promoted() { poll "$1" "select not pg_is_in_recovery()" "the end of recovery"; }

promote() {
    pg pg_ctl -D "$WORK/$1/data" -w -t 60 promote >/dev/null || die "promote $1 failed"
    wait_promoted "$1"
    step "$1 promoted"
}

# ---------------------------------------------------------------------------
# Shapes. Each sets PRODUCTION_TLI (the line a correct restore follows) and
# DESCRIPTION, may set EXPECTED_ROWS_FILE / CORRECT_SETTINGS / oddity fields.
# ---------------------------------------------------------------------------

# One timeline: base + segments (the control case).
shape_straight() {
    DESCRIPTION="one timeline: base backup and the segments after it"
    new_primary prod
    batch prod before_base 100
    switch_and_archive prod
    take_base prod "$BASE"
    batch prod tl1_after_base 200
    switch_and_archive prod
    batch prod tl1_last 50
    end_timeline prod 1
    PRODUCTION_TLI=1
}

# A streaming standby is promoted after its primary stops: timeline 2 begins
# inside the segment holding the old primary's shutdown checkpoint, which
# timeline 1 never archived: the standby ships it as ...partial, and timeline
# 2's first segment starts with timeline 1's pages (xlp_tli = 1).
shape_failover() {
    DESCRIPTION="failover: standby promoted after the primary stopped; TL2 starts mid-segment"
    new_primary prod
    batch prod before_base 100
    switch_and_archive prod
    take_base prod "$BASE"
    batch prod tl1_after_base 200
    switch_and_archive prod
    make_standby prod replica
    batch prod tl1_streamed 70
    end_timeline prod 1
    wait_replayed replica "$(controldata prod "Latest checkpoint location")"
    promote replica
    batch replica tl2 300
    switch_and_archive replica
    batch replica tl2_last 30
    end_timeline replica 2
    PRODUCTION_TLI=2
}

# Production writes A, time T, writes B; a point-in-time restore of the base
# to T (promote, archiving on into the same folder) becomes production on
# timeline 2 and writes C. The switch falls inside the segment of B's commit.
shape_pitr() {
    DESCRIPTION="point-in-time restore to T became production on TL2; B (after T) cut off"
    new_primary prod "$@"
    batch prod before_base 100
    switch_and_archive prod
    take_base prod "$BASE"
    batch prod tl1_kept 200
    rows_json prod >"$FACTS/at_target.rows"
    sql prod "select (pg_last_committed_xact()).timestamp" >"$FACTS/at_target.last_commit"
    local target
    target=$(sql prod "select clock_timestamp()")
    batch prod cut_by_pitr 150
    end_timeline prod 1
    restore pitr "$BASE" "recovery_target_time = '$target'" "recovery_target_action = 'promote'"
    wait_promoted pitr
    step "point-in-time restore to $target promoted"
    batch pitr tl2 250
    switch_and_archive pitr
    batch pitr tl2_last 25
    end_timeline pitr 2
    PRODUCTION_TLI=2
}

# pitr without timeline 2's copy of the switch segment: PostgreSQL falls back to
# timeline 1's file of that number.
shape_pitr_missing_switch() {
    shape_pitr
    DESCRIPTION="pitr without TL2's switch segment (TL1's file of that number stands in)"
    local switch_lsn
    switch_lsn=$(history_line 2 | cut -f2)
    MISSING_SWITCH_SEGMENT=$(segment_of 2 "$switch_lsn")
    [[ -f $WAL/$MISSING_SWITCH_SEGMENT.gz ]] || die "no $MISSING_SWITCH_SEGMENT.gz to remove"
    [[ -f $WAL/${MISSING_SWITCH_SEGMENT/#00000002/00000001}.gz ]] || die "TL1 has no file of that number"
    rm "$WAL/$MISSING_SWITCH_SEGMENT.gz"
    step "removed $MISSING_SWITCH_SEGMENT.gz"
    # The best a restore can do: timeline 1 up to the switch point (A, never B).
    PRODUCTION_END_REACHABLE=false
    EXPECTED_ROWS_FILE=$FACTS/at_target.rows
    EXPECTED_LAST_COMMIT_FILE=$FACTS/at_target.last_commit
    CORRECT_SETTINGS=("recovery_target_lsn = '$switch_lsn'" "recovery_target_inclusive = off"
        "recovery_target_action = 'promote'")
}

# A test restore of production's base, left with archiving on, promotes to
# timeline 2 and ships a few segments into production's folder; production
# carries on on timeline 1 well past them.
shape_test_branch() {
    DESCRIPTION="abandoned test restore shipped TL2 into the folder; production goes on on TL1"
    new_primary prod
    batch prod before_base 100
    switch_and_archive prod
    take_base prod "$BASE"
    batch prod tl1_after_base 200
    switch_and_archive prod
    restore testcopy "$BASE"
    wait_promoted testcopy
    batch testcopy test_branch 40
    switch_and_archive testcopy
    batch testcopy test_branch 5
    end_timeline testcopy 2
    local i
    for i in 1 2 3 4; do
        batch prod prod_after_branch 100
        switch_and_archive prod
    done
    batch prod prod_after_branch 10
    end_timeline prod 1
    PRODUCTION_TLI=1
    BRANCH_TIMELINE=2
}

# The base backup is of a server made by an earlier point-in-time restore
# (target action pause, then resumed by hand): its postgresql.auto.conf still
# holds restore_command, recovery_target_time and recovery_target_action.
shape_inherited_targets() {
    DESCRIPTION="base of a server made by an earlier PITR: recovery_target_time + action pause inherited"
    new_primary prod
    batch prod before_base 100
    switch_and_archive prod
    take_base prod "$WORK/oldbase"
    batch prod tl1_kept 100
    local target
    target=$(sql prod "select clock_timestamp()")
    batch prod cut_by_pitr 100
    end_timeline prod 1
    restore pitr "$WORK/oldbase" "recovery_target_time = '$target'" "recovery_target_action = 'pause'"
    poll pitr "select pg_get_wal_replay_pause_state() = 'paused'" "the pause at the target"
    sql pitr "select pg_wal_replay_resume()"
    wait_promoted pitr
    step "earlier PITR paused at $target, resumed, promoted"
    batch pitr tl2_before_base 100
    switch_and_archive pitr
    take_base pitr "$BASE"
    batch pitr tl2_after_base 200
    switch_and_archive pitr
    batch pitr tl2_last 20
    end_timeline pitr 2
    PRODUCTION_TLI=2
}

# Base taken with pg_basebackup -R: standby.signal and primary_conninfo inside.
shape_standby_base() {
    DESCRIPTION="base taken with pg_basebackup -R (standby.signal, primary_conninfo)"
    new_primary prod
    batch prod before_base 100
    switch_and_archive prod
    take_base prod "$BASE" -R
    batch prod tl1_after_base 200
    switch_and_archive prod
    batch prod tl1_last 50
    end_timeline prod 1
    PRODUCTION_TLI=1
}

# Base taken from a streaming standby (made with -R): it carries the standby's
# standby.signal and primary_conninfo.
shape_standby_base_from_standby() {
    DESCRIPTION="base taken from a streaming standby"
    new_primary prod
    batch prod before_base 100
    switch_and_archive prod
    make_standby prod replica
    batch prod tl1_before_base 50
    wait_replayed replica "$(sql prod "select pg_current_wal_insert_lsn()")"
    take_base replica "$BASE"
    batch prod tl1_after_base 200
    switch_and_archive prod
    batch prod tl1_last 50
    end_timeline prod 1
    stop replica
    PRODUCTION_TLI=1
}

# The source's postgresql.conf names a socket folder that does not exist on the
# restore host, and a fixed port (the builder overrides both on the command line).
shape_foreign_settings() {
    DESCRIPTION="source postgresql.conf names a socket folder that is not on this host, and port 6543"
    FOREIGN_SOCKET_DIR=/run/walwarden-corpus-fleet-prod
    FOREIGN_PORT=6543
    [[ ! -e $FOREIGN_SOCKET_DIR ]] || die "$FOREIGN_SOCKET_DIR exists on this host"
    EXTRA_CONF="unix_socket_directories = '$FOREIGN_SOCKET_DIR'
port = $FOREIGN_PORT"
    shape_straight
    DESCRIPTION="source postgresql.conf names a socket folder that is not on this host, and port 6543"
}

# A new base after a failover: taken on timeline 2 of the promoted standby.
shape_new_base_on_tl2() {
    DESCRIPTION="replica rebuild: new base taken on TL2 after a failover"
    new_primary prod
    batch prod before_base 100
    switch_and_archive prod
    make_standby prod replica
    batch prod tl1_streamed 100
    end_timeline prod 1
    wait_replayed replica "$(controldata prod "Latest checkpoint location")"
    promote replica
    batch replica tl2_before_base 100
    switch_and_archive replica
    take_base replica "$BASE"
    batch replica tl2_after_base 200
    switch_and_archive replica
    batch replica tl2_last 20
    end_timeline replica 2
    PRODUCTION_TLI=2
}

# A restore that ran with archiving off (as walwarden's restore leaves it)
# became production on timeline 2; archiving was turned on later and a new
# base taken. 00000002.history never reached the wal folder (pg_wal.tar.gz has it).
shape_new_base_on_tl2_no_history() {
    DESCRIPTION="new base on TL2 of a restore promoted with archiving off: 00000002.history only in pg_wal.tar.gz"
    new_primary prod
    batch prod before_base 100
    switch_and_archive prod
    take_base prod "$WORK/oldbase"
    batch prod tl1_after_base 200
    end_timeline prod 1
    restore restored "$WORK/oldbase" "archive_mode = 'off'"
    wait_promoted restored
    batch restored tl2_unarchived 30
    switch restored >/dev/null
    sql restored "alter system set archive_mode = 'on'"
    stop restored
    start restored
    step "archiving turned on after the promotion"
    batch restored tl2_before_base 100
    switch_and_archive restored
    take_base restored "$BASE"
    batch restored tl2_after_base 200
    switch_and_archive restored
    batch restored tl2_last 20
    end_timeline restored 2
    [[ ! -e $WAL/00000002.history.gz ]] || die "00000002.history.gz was archived"
    tar_has "$BASE/pg_wal.tar.gz" 00000002.history || die "pg_wal.tar.gz lacks 00000002.history"
    HISTORY_ONLY_IN_PG_WAL_TAR=00000002.history
    PRODUCTION_TLI=2
}

# pitr with 1 MiB segments.
shape_small_segments() {
    shape_pitr --wal-segsize=1
    DESCRIPTION="pitr with 1 MiB WAL segments (initdb --wal-segsize=1)"
}

# failover made by PostgreSQL 17.
shape_promoted_pg17() {
    shape_failover
    DESCRIPTION="failover made by PostgreSQL 17"
}

# ---------------------------------------------------------------------------
# Facts
# ---------------------------------------------------------------------------

json_str() {
    local s=$1
    s=${s//\\/\\\\}
    s=${s//\"/\\\"}
    s=${s//$'\t'/\\t}
    printf '"%s"' "$s"
}
json_opt_str() { if [[ -n $1 ]]; then json_str "$1"; else printf null; fi; }
json_str_array() {
    local first=1 s
    printf '['
    for s in "$@"; do
        [[ $first == 1 ]] || printf ', '
        first=0
        json_str "$s"
    done
    printf ']'
}

# history_line TLI: the last line of TLI's history file ("parent<TAB>lsn<TAB>reason"),
# from the wal folder, else from pg_wal.tar.gz; empty when neither has it.
history_line() {
    local name
    name=$(printf '%08X.history' "$1")
    if [[ -f $WAL/$name.gz ]]; then
        gunzip -c "$WAL/$name.gz"
    elif tar_has "$BASE/pg_wal.tar.gz" "$name"; then
        tar xzOf "$BASE/pg_wal.tar.gz" "$name"
    fi | grep -v '^[[:space:]]*$' | tail -n 1 || true
}

# segment_of TLI LSN: the name of timeline TLI's segment holding LSN.
segment_of() {
    local tli=$1 hi=${2%/*} lo=${2#*/} segno per_id
    segno=$(((16#$hi * 4294967296 + 16#$lo) / SEGSIZE))
    per_id=$((4294967296 / SEGSIZE))
    printf '%08X%08X%08X' "$tli" $((segno / per_id)) $((segno % per_id))
}

# Archived full segments of timeline TLI, sorted.
segments_of() {
    local f prefix
    prefix=$(printf '%08X' "$1")
    for f in "$WAL/$prefix"????????????????.gz; do basename "$f" .gz; done
}

# page_tli SEGMENT: xlp_tli of the segment's first page header.
page_tli() {
    { gunzip -c "$WAL/$1.gz" 2>/dev/null || true; } | head -c 8 | od -An -t u4 -j 4 | tr -d ' '
}

# tar_has TARBALL NAME: whether the tarball holds member NAME (grep reads all of
# tar's output: no SIGPIPE under pipefail).
tar_has() { tar tzf "$1" | grep -x "$2" >/dev/null; }

write_facts() {
    local label start_lsn start_segment start_tli backup_from version tli line
    label=$(tar xzOf "$BASE/base.tar.gz" backup_label)
    start_lsn=$(sed -n 's/^START WAL LOCATION: \([^ ]*\) .*/\1/p' <<<"$label")
    start_segment=$(sed -n 's/^START WAL LOCATION: .*(file \(.*\))$/\1/p' <<<"$label")
    start_tli=$(sed -n 's/^START TIMELINE: //p' <<<"$label")
    backup_from=$(sed -n 's/^BACKUP FROM: //p' <<<"$label")
    version=$(pg postgres --version)

    local -a tlis=()
    for f in "$FACTS"/tl*.rows; do
        f=${f##*/tl}
        tlis+=("${f%.rows}")
    done
    mapfile -t tlis < <(printf '%s\n' "${tlis[@]}" | sort -n)

    local production_last
    production_last=$(segments_of "$PRODUCTION_TLI" | tail -n 1)
    local -a partials=()
    for f in "$WAL"/*.partial.gz; do
        f=${f##*/}
        partials+=("${f%.gz}")
    done
    local -a inherited=()
    mapfile -t inherited < <(tar xzOf "$BASE/base.tar.gz" postgresql.auto.conf |
        grep -E '^[[:space:]]*(recovery_target|restore_command|primary_conninfo|primary_slot_name)' || true)
    local standby_signal=false
    tar_has "$BASE/base.tar.gz" standby.signal && standby_signal=true

    {
        printf '{\n'
        printf '  "shape": %s,\n' "$(json_str "$SHAPE")"
        printf '  "description": %s,\n' "$(json_str "$DESCRIPTION")"
        printf '  "major": %s,\n' "$MAJOR"
        printf '  "server_version": %s,\n' "$(json_str "$version")"
        printf '  "client": %s,\n' "$(json_str "$CLIENT")"
        printf '  "segment_size": %s,\n' "$SEGSIZE"
        printf '  "system_identifier": %s,\n' "$SYSID"
        printf '  "base": {"start_timeline": %s, "start_lsn": %s, "start_segment": %s, "backup_from": %s},\n' \
            "$start_tli" "$(json_str "$start_lsn")" "$(json_str "$start_segment")" "$(json_str "$backup_from")"
        printf '  "production_timeline": %s,\n' "$PRODUCTION_TLI"
        printf '  "production_last_segment": %s,\n' "$(json_str "$production_last")"
        printf '  "production_end_reachable": %s,\n' "$PRODUCTION_END_REACHABLE"
        printf '  "timelines": [\n'
        local sep="" parent switch_lsn reason first last
    local -a segs
        for tli in "${tlis[@]}"; do
            line=$(history_line "$tli")
            IFS=$'\t' read -r parent switch_lsn reason <<<"$line" || true
            mapfile -t segs < <(segments_of "$tli")
            first=${segs[0]:-}
            last=${segs[${#segs[@]} - 1]:-}
            printf '%s    {"tli": %s, "parent": %s, "switch_lsn": %s, "switch_reason": %s,\n' \
                "$sep" "$tli" "${parent:-null}" "$(json_opt_str "$switch_lsn")" "$(json_opt_str "$reason")"
            printf '     "first_segment": %s, "first_segment_page_tli": %s, "last_segment": %s,\n' \
                "$(json_opt_str "$first")" "$( [[ -n $first ]] && page_tli "$first" || echo null)" \
                "$(json_opt_str "$last")"
            printf '     "last_commit": %s, "end_lsn": %s,\n' \
                "$(json_str "$(cat "$FACTS/tl$tli.last_commit")")" "$(json_str "$(cat "$FACTS/tl$tli.end_lsn")")"
            printf '     "rows": %s}' "$(cat "$FACTS/tl$tli.rows")"
            sep=$',\n'
            parent="" switch_lsn="" reason=""
        done
        printf '\n  ],\n'
        printf '  "expected_rows": %s,\n' "$(cat "${EXPECTED_ROWS_FILE:-$FACTS/tl$PRODUCTION_TLI.rows}")"
        printf '  "expected_last_commit": %s,\n' \
            "$(json_str "$(cat "${EXPECTED_LAST_COMMIT_FILE:-$FACTS/tl$PRODUCTION_TLI.last_commit}")")"
        printf '  "correct_restore_settings": %s,\n' "$(json_str_array "${CORRECT_SETTINGS[@]}")"
        printf '  "oddity": {\n'
        printf '    "missing_switch_segment": %s,\n' "$(json_opt_str "${MISSING_SWITCH_SEGMENT:-}")"
        printf '    "branch_timeline": %s,\n' "${BRANCH_TIMELINE:-null}"
        printf '    "inherited_settings": %s,\n' "$(json_str_array "${inherited[@]}")"
        printf '    "standby_signal": %s,\n' "$standby_signal"
        printf '    "foreign_socket_dir": %s,\n' "$(json_opt_str "${FOREIGN_SOCKET_DIR:-}")"
        printf '    "foreign_port": %s,\n' "${FOREIGN_PORT:-null}"
        printf '    "history_only_in_pg_wal_tar": %s,\n' "$(json_opt_str "${HISTORY_ONLY_IN_PG_WAL_TAR:-}")"
        printf '    "partial_segments": %s\n' "$(json_str_array "${partials[@]}")"
        printf '  }\n'
        printf '}\n'
    } >"$OUT/facts.json"
}

# ---------------------------------------------------------------------------
# Main
# ---------------------------------------------------------------------------
declare -F "shape_$SHAPE" >/dev/null || die "unknown shape $SHAPE"
[[ ! -e $OUT ]] || die "$OUT exists"
case $SHAPE in
    promoted_pg17) MAJOR=17 ;;
    *) MAJOR=15 ;;
esac
PG_BIN=$(pg_bin_dir "$MAJOR")
PG_LIBDIR=""
[[ -e $PG_BIN/../lib/libpq.so.5 ]] && PG_LIBDIR=$(cd "$PG_BIN/../lib" && pwd)

mkdir -p "$OUT"
give_to_pg "$OUT"
WORK=$(mktemp -d /tmp/wwcorpus.XXXXXX)
chmod 755 "$WORK"
give_to_pg "$WORK"
trap cleanup EXIT
trap 'echo "[corpus $SHAPE] failed at line $LINENO: $BASH_COMMAND" >&2' ERR
FACTS=$WORK/facts
mkdir "$FACTS"
as_pg mkdir -p "$BASE" "$WAL"
rmdir "$BASE" # pg_basebackup creates it
PRODUCTION_END_REACHABLE=true
(( ${#WAL} < 400 )) || die "archive path $WAL is too long for archive_command"
CORRECT_SETTINGS=()
step "PostgreSQL $MAJOR from $PG_BIN, work in $WORK, archive in $ROOT"

"shape_$SHAPE"
write_facts

# The archive is read-only from here on: owned by root (when root), readable
# and traversable by everyone, writable by no one else.
if [[ $(id -u) == 0 ]]; then chown -R 0:0 "$OUT"; fi
chmod -R u+rwX,go+rX,go-w "$OUT"
step "done: $(ls "$WAL" | wc -l) files in wal/"
