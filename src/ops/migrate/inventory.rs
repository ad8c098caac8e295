//! What a server holds, asked through psql: its version, identity, databases,
//! roles and the exact row count of every user table; and the comparison of
//! the two ends that tells whether everything arrived.
//!
//! Queries print one JSON value per line so names with any characters
//! (spaces, quotes, `|`) come back intact. Only databases that accept
//! connections are listed: template0 is neither dumped nor comparable.

use std::collections::{BTreeMap, BTreeSet};
use std::io::Write;
use std::process::Stdio;

use serde::{Deserialize, Serialize};

use super::{End, MigrateError};

/// One server as seen before or after the migration.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Inventory {
    /// `server_version_num`, e.g. 150014.
    pub version_num: u32,
    /// `server_version`, e.g. `15.14 (Debian 15.14-0+deb12u1)`.
    pub version: String,
    /// The role the connection runs as.
    pub user: String,
    /// The database the connection opens.
    pub database: String,
    /// pg_control's system identifier: equal on two ends means one cluster (or a physical copy).
    pub system_identifier: String,
    pub databases: Vec<String>,
    /// Role names without PostgreSQL's predefined `pg_*` roles.
    pub roles: Vec<String>,
}

impl Inventory {
    /// The major version: 15 for 150014 (10 and later number majors by the first part).
    pub fn major(&self) -> u32 {
        if self.version_num >= 100_000 {
            self.version_num / 10_000
        } else {
            self.version_num / 100
        }
    }
}

/// A table's place: database, schema, table.
pub type TableKey = (String, String, String);

/// Exact row counts per user table.
pub type Counts = BTreeMap<TableKey, u64>;

const INVENTORY_SQL: &str = "select json_build_object(\
 'version_num', current_setting('server_version_num')::int,\
 'version', current_setting('server_version'),\
 'user', current_user,\
 'database', current_database(),\
 'system_identifier', (select system_identifier::text from pg_control_system()),\
 'databases', (select coalesce(json_agg(datname::text), '[]') from pg_database where datallowconn),\
 'roles', (select coalesce(json_agg(rolname::text), '[]') from pg_roles where rolname !~ '^pg_'))";

/// Builds, for the database psql is connected to, one `count(*)` per user
/// table, each printing `["db","schema","table",N]`, run by `\gexec`.
const COUNTS_SQL: &str = "select format('select json_build_array(%L::text, %L::text, %L::text, count(*)) from %I.%I', \
 current_database(), n.nspname, c.relname, n.nspname, c.relname) \
 from pg_class c join pg_namespace n on n.oid = c.relnamespace \
 where c.relkind = 'r' and n.nspname <> 'information_schema' and n.nspname !~ '^pg_' \
 order by n.nspname, c.relname \\gexec\n";

/// Asks `end` for its inventory.
pub fn inventory(end: &End) -> Result<Inventory, MigrateError> {
    let out = run_script(end, &format!("{INVENTORY_SQL};\n"))?;
    let line = out.lines().find(|l| !l.trim().is_empty()).unwrap_or("");
    let mut inventory: Inventory = serde_json::from_str(line).map_err(|e| MigrateError::Query {
        end: end.name,
        message: format!("unexpected answer to the inventory query ({e}): {line:?}"),
    })?;
    inventory.databases.sort();
    inventory.roles.sort();
    Ok(inventory)
}

/// Exact row counts of every user table in `databases` on `end`.
pub fn count_rows(end: &End, databases: &[String]) -> Result<Counts, MigrateError> {
    if databases.is_empty() {
        return Ok(Counts::new());
    }
    let mut script = String::new();
    for db in databases {
        script.push_str(&format!("\\connect {}\n", psql_quoted(db, end)?));
        script.push_str(COUNTS_SQL);
    }
    let out = run_script(end, &script)?;
    let mut counts = Counts::new();
    for line in out.lines().filter(|l| !l.trim().is_empty()) {
        let (db, schema, table, rows): (String, String, String, u64) =
            serde_json::from_str(line).map_err(|e| MigrateError::Query {
                end: end.name,
                message: format!("unexpected answer to a row count ({e}): {line:?}"),
            })?;
        counts.insert((db, schema, table), rows);
    }
    Ok(counts)
}

/// A database name as one argument of psql's `\connect`: in double quotes,
/// inner ones doubled. A newline cannot be written there at all.
fn psql_quoted(name: &str, end: &End) -> Result<String, MigrateError> {
    if name.contains(['\n', '\r']) {
        return Err(MigrateError::Query {
            end: end.name,
            message: format!(
                "database {name:?} has a line break in its name: walwarden cannot compare it"
            ),
        });
    }
    Ok(format!("\"{}\"", name.replace('"', "\"\"")))
}

/// Runs `script` with psql on `end` (stops at the first error) and returns stdout.
fn run_script(end: &End, script: &str) -> Result<String, MigrateError> {
    let mut command = end.command("psql");
    command
        .args(["-X", "-w", "-q", "-A", "-t", "-v", "ON_ERROR_STOP=1", "-d"])
        .arg(&end.conninfo)
        .args(["-f", "-"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let program = end.program("psql");
    let mut child = command.spawn().map_err(|source| MigrateError::Spawn {
        program: program.clone(),
        source,
    })?;
    // Written from a thread: psql answers while it reads, and a long answer
    // would otherwise fill its stdout pipe while we still write.
    let writer = child.stdin.take().map(|mut stdin| {
        let script = script.to_owned();
        std::thread::spawn(move || stdin.write_all(script.as_bytes()))
    });
    let output = child
        .wait_with_output()
        .map_err(|source| MigrateError::Spawn { program, source })?;
    if let Some(writer) = writer {
        // A write error only means psql stopped reading; its status says why.
        let _ = writer.join();
    }
    if !output.status.success() {
        return Err(MigrateError::Query {
            end: end.name,
            message: format!(
                "psql failed ({}): {}",
                output.status,
                String::from_utf8_lossy(&output.stderr).trim()
            ),
        });
    }
    Ok(String::from_utf8_lossy(&output.stdout).into_owned())
}

/// A table whose row count differs, or that exists on one end only.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct CountDifference {
    pub database: String,
    pub schema: String,
    pub table: String,
    pub source: Option<u64>,
    pub destination: Option<u64>,
}

/// The two ends compared after the load.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Verification {
    pub databases: usize,
    pub roles: usize,
    pub tables: usize,
    pub rows: u64,
    /// On the source, not on the destination: something did not arrive.
    pub missing_databases: Vec<String>,
    pub missing_roles: Vec<String>,
    /// Only on the destination: it had them before (not a failure, shown).
    pub extra_databases: Vec<String>,
    pub extra_roles: Vec<String>,
    pub differences: Vec<CountDifference>,
}

impl Verification {
    /// Everything on the source is on the destination, with the same row counts.
    pub fn equal(&self) -> bool {
        self.missing_databases.is_empty()
            && self.missing_roles.is_empty()
            && self.differences.is_empty()
    }
}

/// Compares two inventories and their counts (pure).
pub fn compare(
    source: &Inventory,
    source_counts: &Counts,
    dest: &Inventory,
    dest_counts: &Counts,
) -> Verification {
    let only = |a: &[String], b: &[String]| -> Vec<String> {
        let b: BTreeSet<&String> = b.iter().collect();
        a.iter().filter(|x| !b.contains(x)).cloned().collect()
    };
    let mut differences = Vec::new();
    let keys: BTreeSet<&TableKey> = source_counts.keys().chain(dest_counts.keys()).collect();
    for key in keys {
        let (s, d) = (source_counts.get(key), dest_counts.get(key));
        if s != d {
            differences.push(CountDifference {
                database: key.0.clone(),
                schema: key.1.clone(),
                table: key.2.clone(),
                source: s.copied(),
                destination: d.copied(),
            });
        }
    }
    Verification {
        databases: source.databases.len(),
        roles: source.roles.len(),
        tables: source_counts.len(),
        rows: source_counts.values().sum(),
        missing_databases: only(&source.databases, &dest.databases),
        missing_roles: only(&source.roles, &dest.roles),
        extra_databases: only(&dest.databases, &source.databases),
        extra_roles: only(&dest.roles, &source.roles),
        differences,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn inventory(databases: &[&str], roles: &[&str]) -> Inventory {
        Inventory {
            version_num: 150014,
            version: "15.14".into(),
            user: "postgres".into(),
            database: "postgres".into(),
            system_identifier: "1".into(),
            databases: databases.iter().map(|s| s.to_string()).collect(),
            roles: roles.iter().map(|s| s.to_string()).collect(),
        }
    }

    fn counts(rows: &[(&str, &str, &str, u64)]) -> Counts {
        rows.iter()
            .map(|(d, s, t, n)| ((d.to_string(), s.to_string(), t.to_string()), *n))
            .collect()
    }

    #[test]
    fn majors_from_version_numbers() {
        let mut i = inventory(&[], &[]);
        assert_eq!(i.major(), 15);
        i.version_num = 170002;
        assert_eq!(i.major(), 17);
        i.version_num = 90624;
        assert_eq!(i.major(), 906);
    }

    #[test]
    fn equal_ends_compare_equal() {
        let s = inventory(&["postgres", "shop"], &["app", "postgres"]);
        let c = counts(&[
            ("shop", "sales", "orders", 100),
            ("shop", "stock", "items", 7),
        ]);
        let v = compare(&s, &c, &s, &c);
        assert!(v.equal(), "{v:?}");
        assert_eq!((v.databases, v.roles, v.tables, v.rows), (2, 2, 2, 107));
    }

    #[test]
    fn what_did_not_arrive_is_named() {
        let s = inventory(&["postgres", "shop"], &["app", "postgres"]);
        let d = inventory(&["old", "postgres"], &["postgres", "someone"]);
        let sc = counts(&[
            ("shop", "sales", "orders", 100),
            ("shop", "stock", "items", 7),
        ]);
        let dc = counts(&[("shop", "sales", "orders", 99), ("shop", "x", "new", 1)]);
        let v = compare(&s, &sc, &d, &dc);
        assert!(!v.equal());
        assert_eq!(v.missing_databases, ["shop"]);
        assert_eq!(v.missing_roles, ["app"]);
        assert_eq!(v.extra_databases, ["old"]);
        assert_eq!(v.extra_roles, ["someone"]);
        let diffs: Vec<(&str, Option<u64>, Option<u64>)> = v
            .differences
            .iter()
            .map(|d| (d.table.as_str(), d.source, d.destination))
            .collect();
        assert_eq!(
            diffs,
            [
                ("orders", Some(100), Some(99)),
                ("items", Some(7), None),
                ("new", None, Some(1))
            ]
        );
    }

    #[test]
    fn extra_roles_alone_are_not_a_failure() {
        let s = inventory(&["postgres"], &["postgres"]);
        let d = inventory(&["postgres", "mine"], &["postgres", "backup"]);
        assert!(compare(&s, &Counts::new(), &d, &Counts::new()).equal());
    }
}
