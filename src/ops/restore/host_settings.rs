//! Settings a base backup brings from its source server that cannot work on
//! the restore host, found before anything is touched.
//!
//! The restored server starts with the source's postgresql.conf and
//! postgresql.auto.conf (and what they include). A socket folder, a data or
//! certificate file, a library or a log folder that exists only on the
//! source makes the postmaster stop at once (`FATAL:  could not create lock
//! file "/…/.s.PGSQL.5432.lock": No such file or directory`), and a port
//! another server holds does too. Each finding carries the `--set` that
//! would make it work, which the preflight proposes and the wizard pre-fills.
//! Settings the restore itself writes, or the engineer gives with `--set`,
//! win over the files, as they do in PostgreSQL (later lines win).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// One setting that would stop the restored server, and the fix.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostMismatch {
    pub key: String,
    pub value: String,
    /// The file that set it, as named in the tarball.
    pub from: String,
    pub why: String,
    /// `KEY=VALUE` for `--set`; `None` when only the engineer can say.
    pub proposal: Option<(String, String)>,
}

/// What the host offers, looked up by the caller (so the rules stay pure).
pub trait Host {
    fn exists(&self, path: &Path) -> bool;
    /// Something listens on this port (a socket file in `dirs`, or TCP on loopback).
    fn port_taken(&self, port: u16, socket_dirs: &[PathBuf]) -> bool;
    /// A port nobody listens on.
    fn free_port(&self) -> u16;
    /// The folder where this PostgreSQL's loadable modules live.
    fn pkglibdir(&self) -> Option<PathBuf>;
    /// A socket folder that exists here, for the proposal.
    fn socket_folder(&self) -> PathBuf;
}

/// The settings as PostgreSQL would see them: the configuration files of the
/// tarball in their order (postgresql.conf with its includes, then
/// postgresql.auto.conf), then `overrides` (the restore's own and `--set`).
pub fn effective_settings(
    files: &BTreeMap<String, String>,
    overrides: &[(String, String)],
    mut missing_include: impl FnMut(String, String),
) -> BTreeMap<String, (String, String)> {
    let mut settings = BTreeMap::new();
    for top in ["postgresql.conf", "postgresql.auto.conf"] {
        read_file(top, files, &mut settings, &mut missing_include, 0);
    }
    for (key, value) in overrides {
        settings.insert(key.clone(), (value.clone(), "--set".to_owned()));
    }
    settings
}

fn read_file(
    name: &str,
    files: &BTreeMap<String, String>,
    settings: &mut BTreeMap<String, (String, String)>,
    missing_include: &mut impl FnMut(String, String),
    depth: u32,
) {
    // PostgreSQL stops at 10 levels of nesting; so does this.
    if depth > 10 {
        return;
    }
    let Some(text) = files.get(name) else {
        return;
    };
    for (key, value) in parse_conf(text) {
        match key.as_str() {
            "include" | "include_if_exists" => {
                let target = relative_to(name, &value);
                if files.contains_key(&target) {
                    read_file(&target, files, settings, missing_include, depth + 1);
                } else if key == "include" {
                    missing_include(name.to_owned(), value);
                }
            }
            "include_dir" => {
                let dir = relative_to(name, &value);
                let prefix = format!("{}/", dir.trim_end_matches('/'));
                let included: Vec<String> = files
                    .keys()
                    .filter(|k| k.starts_with(&prefix) && k.ends_with(".conf"))
                    .filter(|k| !k[prefix.len()..].contains('/'))
                    .cloned()
                    .collect();
                for file in included {
                    read_file(&file, files, settings, missing_include, depth + 1);
                }
            }
            _ => {
                settings.insert(key, (value, name.to_owned()));
            }
        }
    }
}

/// An include names a file relative to the including file's folder; inside
/// the data directory that is the tarball's own path.
fn relative_to(including: &str, target: &str) -> String {
    if target.starts_with('/') {
        return target.to_owned();
    }
    match including.rsplit_once('/') {
        Some((dir, _)) => format!("{dir}/{target}"),
        None => target.to_owned(),
    }
}

/// `name = value` lines of a postgresql.conf, as PostgreSQL's parser reads
/// them: `=` optional, values quoted with `'` (`''` and `\'` inside),
/// `#` comments, names lower-cased.
pub fn parse_conf(text: &str) -> Vec<(String, String)> {
    let mut out = Vec::new();
    for line in text.lines() {
        let line = line.trim_start();
        let name_len = line
            .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_' || c == '.'))
            .unwrap_or(line.len());
        if name_len == 0 {
            continue;
        }
        let name = line[..name_len].to_ascii_lowercase();
        let mut rest = line[name_len..].trim_start();
        if let Some(after) = rest.strip_prefix('=') {
            rest = after.trim_start();
        }
        let value = if let Some(quoted) = rest.strip_prefix('\'') {
            let mut value = String::new();
            let mut chars = quoted.chars().peekable();
            let mut closed = false;
            while let Some(c) = chars.next() {
                match c {
                    '\'' if chars.peek() == Some(&'\'') => {
                        chars.next();
                        value.push('\'');
                    }
                    '\'' => {
                        closed = true;
                        break;
                    }
                    '\\' => {
                        if let Some(next) = chars.next() {
                            value.push(next);
                        }
                    }
                    c => value.push(c),
                }
            }
            if !closed {
                continue;
            }
            value
        } else {
            rest.split(|c: char| c.is_whitespace() || c == '#')
                .next()
                .unwrap_or("")
                .to_owned()
        };
        out.push((name, value));
    }
    out
}

/// The `KEY=VALUE` settings that fix what was found, each once, in the
/// order found: what the preflight's refusal names as `--set` and what the
/// wizard pre-fills.
pub fn proposed_pairs(found: &[HostMismatch]) -> Vec<(String, String)> {
    let mut pairs: Vec<(String, String)> = Vec::new();
    for pair in found.iter().filter_map(|m| m.proposal.as_ref()) {
        if !pairs.contains(pair) {
            pairs.push(pair.clone());
        }
    }
    pairs
}

/// The settings that cannot work here, each with its fix. `data_dir` is where
/// the backup is restored (relative paths in settings are inside it).
pub fn mismatches(
    files: &BTreeMap<String, String>,
    overrides: &[(String, String)],
    data_dir: &Path,
    host: &dyn Host,
) -> Vec<HostMismatch> {
    let mut found = Vec::new();
    let settings = effective_settings(files, overrides, |from, include| {
        found.push(HostMismatch {
            key: "include".into(),
            value: include.clone(),
            from,
            why: format!("the included file {include} is not in the base backup"),
            proposal: None,
        });
    });
    let get = |key: &str| settings.get(key).filter(|(_, from)| from != "--set");
    let in_data = |value: &str| -> PathBuf {
        if value.starts_with('/') {
            PathBuf::from(value)
        } else {
            data_dir.join(value)
        }
    };
    let mut push =
        |key: &str, value: &str, from: &str, why: String, proposal: Option<(&str, String)>| {
            found.push(HostMismatch {
                key: key.to_owned(),
                value: value.to_owned(),
                from: from.to_owned(),
                why,
                proposal: proposal.map(|(k, v)| (k.to_owned(), v)),
            });
        };

    let socket_dirs: Vec<PathBuf> = settings
        .get("unix_socket_directories")
        .map(|(v, _)| v.as_str())
        .unwrap_or("/var/run/postgresql")
        .split(',')
        .map(|d| d.trim().trim_matches('"'))
        .filter(|d| !d.is_empty() && !d.starts_with('@'))
        .map(&in_data)
        .collect();
    if let Some((value, from)) = get("unix_socket_directories") {
        let missing: Vec<String> = socket_dirs
            .iter()
            .filter(|d| !host.exists(d))
            .map(|d| d.display().to_string())
            .collect();
        if !missing.is_empty() {
            push(
                "unix_socket_directories",
                value,
                from,
                format!("socket folder {} does not exist here", missing.join(", ")),
                Some((
                    "unix_socket_directories",
                    host.socket_folder().display().to_string(),
                )),
            );
        }
    }
    let port: u16 = settings
        .get("port")
        .and_then(|(v, _)| v.parse().ok())
        .unwrap_or(5432);
    if settings.get("port").is_none_or(|(_, from)| from != "--set")
        && host.port_taken(port, &socket_dirs)
    {
        let (value, from) = settings
            .get("port")
            .cloned()
            .unwrap_or_else(|| ("5432".into(), "the default".into()));
        push(
            "port",
            &value,
            &from,
            format!("port {port} is taken by another server here"),
            Some(("port", host.free_port().to_string())),
        );
    }
    for key in ["hba_file", "ident_file"] {
        if let Some((value, from)) = get(key)
            && !host.exists(&in_data(value))
        {
            let default = if key == "hba_file" {
                "pg_hba.conf"
            } else {
                "pg_ident.conf"
            };
            push(
                key,
                value,
                from,
                format!("{value} does not exist here"),
                Some((key, data_dir.join(default).display().to_string())),
            );
        }
    }
    let ssl_on = settings.get("ssl").is_some_and(|(v, _)| {
        matches!(v.to_ascii_lowercase().as_str(), "on" | "true" | "yes" | "1")
    });
    if ssl_on {
        for key in [
            "ssl_cert_file",
            "ssl_key_file",
            "ssl_ca_file",
            "ssl_crl_file",
        ] {
            let default = match key {
                "ssl_cert_file" => "server.crt",
                "ssl_key_file" => "server.key",
                _ => "",
            };
            let value = settings
                .get(key)
                .map(|(v, _)| v.clone())
                .unwrap_or_else(|| default.to_owned());
            let from = settings.get(key).map_or("the default", |(_, f)| f.as_str());
            if !value.is_empty() && !host.exists(&in_data(&value)) {
                push(
                    key,
                    &value,
                    from,
                    format!("ssl is on and {value} does not exist here"),
                    Some(("ssl", "off".to_owned())),
                );
            }
        }
    }
    if let Some((value, from)) = get("shared_preload_libraries") {
        let libraries: Vec<&str> = value
            .split(',')
            .map(|l| l.trim().trim_matches('"'))
            .filter(|l| !l.is_empty())
            .collect();
        if let Some(pkglibdir) = host.pkglibdir() {
            let (present, absent): (Vec<&str>, Vec<&str>) = libraries.iter().partition(|lib| {
                let file = lib.strip_prefix("$libdir/").unwrap_or(lib);
                let path = if file.starts_with('/') {
                    PathBuf::from(file)
                } else {
                    pkglibdir.join(file)
                };
                host.exists(&path) || host.exists(&path.with_extension("so"))
            });
            if !absent.is_empty() {
                push(
                    "shared_preload_libraries",
                    value,
                    from,
                    format!(
                        "{} not installed in {} (install the same extension packages as on the source to keep them)",
                        absent.join(", "),
                        pkglibdir.display()
                    ),
                    Some(("shared_preload_libraries", present.join(","))),
                );
            }
        }
    }
    let collector = settings.get("logging_collector").is_some_and(|(v, _)| {
        matches!(v.to_ascii_lowercase().as_str(), "on" | "true" | "yes" | "1")
    });
    if collector
        && let Some((value, from)) = get("log_directory")
        && value.starts_with('/')
        && !host.exists(Path::new(value))
    {
        push(
            "log_directory",
            value,
            from,
            format!("log folder {value} does not exist here"),
            Some(("log_directory", "log".to_owned())),
        );
    }
    if let Some((value, from)) = get("external_pid_file")
        && !value.is_empty()
        && !in_data(value).parent().is_some_and(|p| host.exists(p))
    {
        push(
            "external_pid_file",
            value,
            from,
            format!("the folder of {value} does not exist here"),
            Some(("external_pid_file", String::new())),
        );
    }
    if let Some((value, from)) = get("stats_temp_directory")
        && value.starts_with('/')
        && !host.exists(Path::new(value))
    {
        push(
            "stats_temp_directory",
            value,
            from,
            format!("{value} does not exist here"),
            Some(("stats_temp_directory", "pg_stat_tmp".to_owned())),
        );
    }
    found
}

#[cfg(test)]
mod tests {
    use super::*;

    struct FakeHost {
        existing: Vec<PathBuf>,
        taken: Vec<u16>,
    }

    impl Host for FakeHost {
        fn exists(&self, path: &Path) -> bool {
            self.existing.iter().any(|p| p == path)
        }
        fn port_taken(&self, port: u16, _: &[PathBuf]) -> bool {
            self.taken.contains(&port)
        }
        fn free_port(&self) -> u16 {
            54999
        }
        fn pkglibdir(&self) -> Option<PathBuf> {
            Some(PathBuf::from("/usr/lib/postgresql/15/lib"))
        }
        fn socket_folder(&self) -> PathBuf {
            PathBuf::from("/var/run/postgresql")
        }
    }

    fn files(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn conf_lines_parse_as_postgresql_reads_them() {
        let parsed = parse_conf(
            "# comment\nPort = 6543 # trailing\nunix_socket_directories='/run/a, /tmp'\n\
             listen_addresses ''\napplication_name = 'it''s \\'x\\''\nbroken = 'no end\n",
        );
        assert_eq!(
            parsed,
            vec![
                ("port".into(), "6543".into()),
                ("unix_socket_directories".into(), "/run/a, /tmp".into()),
                ("listen_addresses".into(), "".into()),
                ("application_name".into(), "it's 'x'".into()),
            ]
        );
    }

    #[test]
    fn a_missing_socket_folder_and_a_taken_port_are_found_with_their_fix() {
        let host = FakeHost {
            existing: vec![PathBuf::from("/tmp")],
            taken: vec![6543],
        };
        let conf = files(&[
            (
                "postgresql.conf",
                "port = 6543\nunix_socket_directories = '/run/fleet, /tmp'\ninclude_dir = 'conf.d'\n",
            ),
            (
                "conf.d/ssl.conf",
                "ssl = on\nssl_cert_file = '/etc/ssl/fleet.crt'\nssl_key_file = 'server.key'\n",
            ),
            (
                "postgresql.auto.conf",
                "shared_preload_libraries = 'pg_stat_statements,timescaledb'\n",
            ),
        ]);
        let found = mismatches(&conf, &[], Path::new("/data"), &host);
        let keys: Vec<(&str, Option<(&str, &str)>)> = found
            .iter()
            .map(|m| {
                (
                    m.key.as_str(),
                    m.proposal.as_ref().map(|(k, v)| (k.as_str(), v.as_str())),
                )
            })
            .collect();
        assert_eq!(
            keys,
            vec![
                (
                    "unix_socket_directories",
                    Some(("unix_socket_directories", "/var/run/postgresql"))
                ),
                ("port", Some(("port", "54999"))),
                ("ssl_cert_file", Some(("ssl", "off"))),
                ("ssl_key_file", Some(("ssl", "off"))),
                (
                    "shared_preload_libraries",
                    Some(("shared_preload_libraries", ""))
                ),
            ]
        );
        assert_eq!(found[0].from, "postgresql.conf");
        assert_eq!(found[2].from, "conf.d/ssl.conf");
        // The engineer's --set wins over the files: nothing left to fix.
        let overrides: Vec<(String, String)> = [
            ("unix_socket_directories", "/tmp"),
            ("port", "6000"),
            ("ssl", "off"),
            ("shared_preload_libraries", ""),
        ]
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
        assert_eq!(
            mismatches(&conf, &overrides, Path::new("/data"), &host),
            vec![]
        );
    }

    #[test]
    fn a_missing_include_is_named() {
        let host = FakeHost {
            existing: vec![],
            taken: vec![],
        };
        let conf = files(&[(
            "postgresql.conf",
            "include '/etc/fleet/extra.conf'\ninclude_if_exists 'gone.conf'\n",
        )]);
        let found = mismatches(&conf, &[], Path::new("/data"), &host);
        assert_eq!(found.len(), 1, "{found:?}");
        assert_eq!(found[0].key, "include");
        assert!(found[0].why.contains("/etc/fleet/extra.conf"));
    }
}
