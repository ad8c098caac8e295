//! The optional TOML configuration: the backup root and per-client settings.
//!
//! Every setting is optional. Durations are humantime text (`90s`, `1h`,
//! `2days`); a bad value is reported with the key that holds it. Settings
//! under `[defaults]` apply to every client; `[clients.NAME]` overrides them.
//! A client's `[clients.NAME.target]` names the server its PostgreSQL ran on,
//! which a restore stops over SSH (host keys always checked strictly).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;
use thiserror::Error;

use crate::archive::wal::RawSegmentName;

pub const DEFAULT_ROOT: &str = "/var/lib/postgresql/backups";
pub const SYSTEM_CONFIG: &str = "/etc/walwarden/config.toml";

#[derive(Debug, Error)]
pub enum ConfigError {
    #[error("cannot read config file {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("config file {path}: {message}")]
    Parse { path: PathBuf, message: String },
    #[error("config file {path}: `{key}`: {message}")]
    Invalid {
        path: PathBuf,
        key: String,
        message: String,
    },
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawConfig {
    root: Option<PathBuf>,
    #[serde(default)]
    defaults: RawSettings,
    #[serde(default)]
    clients: BTreeMap<String, RawSettings>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawSettings {
    archive_timeout: Option<String>,
    stale_grace: Option<String>,
    partial_grace: Option<String>,
    drill_max_age: Option<String>,
    rto: Option<String>,
    data_dir: Option<PathBuf>,
    local_start_command: Option<String>,
    local_stop_command: Option<String>,
    local_log: Option<PathBuf>,
    quota: Option<String>,
    #[serde(default)]
    acknowledged_gaps: Vec<AcknowledgedGap>,
    target: Option<RawTarget>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawTarget {
    host: Option<String>,
    port: Option<i64>,
    user: Option<String>,
    stop_command: Option<String>,
    known_hosts: Option<PathBuf>,
    identity: Option<PathBuf>,
    connect_timeout: Option<String>,
    psql_command: Option<String>,
    log_file: Option<String>,
}

/// A gap an engineer has looked at and accepted: it stays listed but no
/// longer raises the client's status.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields)]
pub struct AcknowledgedGap {
    /// First missing segment name (24 hex digits).
    pub from: String,
    /// Last missing segment name; the same as `from` when omitted.
    pub to: Option<String>,
    pub note: String,
}

impl AcknowledgedGap {
    /// True when the missing range `first..=last` (segment names) lies inside this acknowledgement.
    pub fn covers(&self, first: &str, last: &str) -> bool {
        let from = self.from.to_ascii_uppercase();
        let to = self
            .to
            .as_deref()
            .unwrap_or(&self.from)
            .to_ascii_uppercase();
        from.as_str() <= first && last <= to.as_str()
    }
}

/// Shell command lines that start and stop the local instance, and the log
/// its start writes. Placeholders: `{data}`, `{log}`, `{major}`, `{pg_bin}`.
/// Unset: Debian's `pg_ctlcluster MAJOR CLUSTER` when /etc/postgresql names
/// the data directory, else `pg_ctl` as the PostgreSQL user.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LocalService {
    pub start: Option<String>,
    pub stop: Option<String>,
    pub log: Option<PathBuf>,
}

/// The settings that decide a client's health, defaults filled in.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientPolicy {
    /// How often the client's archive_command is expected to deliver a segment at least.
    pub archive_timeout: Duration,
    /// Slack on top of archive_timeout before a quiet archive is called stale.
    pub stale_grace: Duration,
    /// Age after which a `.part` file counts as an interrupted transfer.
    pub partial_grace: Duration,
    /// Warn when the last successful restore drill is older than this (no warning when unset).
    pub drill_max_age: Option<Duration>,
    /// The recovery time the client is held to: `rto_exceeded` when the
    /// estimate from the last drill passes it, or no drill exists (unset: no rule).
    pub rto: Option<Duration>,
    /// Where this client's database is restored to on this machine (`restore` without --data-dir).
    pub data_dir: Option<PathBuf>,
    /// How `restore` starts, stops and logs the local instance (`None`: detected).
    pub local: LocalService,
    pub acknowledged_gaps: Vec<AcknowledgedGap>,
    /// Bytes the client's folder may hold; the receiver refuses an upload that would pass it.
    pub quota: Option<u64>,
}

impl Default for ClientPolicy {
    fn default() -> Self {
        ClientPolicy {
            archive_timeout: Duration::from_secs(3600),
            stale_grace: Duration::from_secs(600),
            partial_grace: Duration::from_secs(600),
            drill_max_age: None,
            rto: None,
            data_dir: None,
            local: Default::default(),
            acknowledged_gaps: Vec::new(),
            quota: None,
        }
    }
}

/// Run on the target server when `stop_command` is not set: Debian's wrapper,
/// through sudo without a password prompt (`-n` fails at once instead of hanging).
/// `{major}` becomes the backup's PostgreSQL major version.
pub const DEFAULT_STOP_COMMAND: &str = "sudo -n pg_ctlcluster {major} main stop -m fast";
pub const DEFAULT_SSH_PORT: u16 = 22;
pub const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// The server a client's PostgreSQL ran on: before a restore, walwarden stops
/// the old instance there over SSH when it is still reachable.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TargetServer {
    pub host: String,
    pub port: u16,
    pub user: String,
    /// A shell command line run on the host; `{major}` becomes the backup's major version.
    pub stop_command: String,
    /// `None`: ssh's own default, `~/.ssh/known_hosts` of the user walwarden runs as.
    pub known_hosts: Option<PathBuf>,
    /// `None`: ssh's default keys and agent.
    pub identity: Option<PathBuf>,
    pub connect_timeout: Duration,
    /// How to run psql as a superuser there; `None`: `psql` when `user` is
    /// postgres, else `sudo -n -u postgres psql`.
    pub psql_command: Option<String>,
    /// The server's log file there; `None`: `pg_current_logfile()` when the
    /// logging collector runs, else Debian's `/var/log/postgresql/postgresql-{major}-main.log`.
    pub log_file: Option<String>,
}

impl TargetServer {
    /// `user@host` on port 22 with the default stop command and timeout.
    pub fn new(host: &str, user: &str) -> TargetServer {
        TargetServer {
            host: host.to_owned(),
            port: DEFAULT_SSH_PORT,
            user: user.to_owned(),
            stop_command: DEFAULT_STOP_COMMAND.to_owned(),
            known_hosts: None,
            identity: None,
            connect_timeout: DEFAULT_CONNECT_TIMEOUT,
            psql_command: None,
            log_file: None,
        }
    }

    /// The stop command for a backup of PostgreSQL `major`.
    pub fn stop_command_for(&self, major: u32) -> String {
        self.stop_command.replace("{major}", &major.to_string())
    }

    /// The host as messages name it: `db1`, or `db1:2222` off the default port.
    pub fn address(&self) -> String {
        let host = if self.host.contains(':') {
            format!("[{}]", self.host)
        } else {
            self.host.clone()
        };
        if self.port == DEFAULT_SSH_PORT {
            host
        } else {
            format!("{host}:{}", self.port)
        }
    }

    /// The known_hosts file ssh consults, as messages name it.
    pub fn known_hosts_text(&self) -> String {
        match &self.known_hosts {
            Some(path) => path.display().to_string(),
            None => "~/.ssh/known_hosts".to_owned(),
        }
    }
}

#[derive(Debug, Clone, Default)]
pub struct Config {
    /// Where this configuration came from, if from a file.
    pub source: Option<PathBuf>,
    pub root: Option<PathBuf>,
    defaults: ClientPolicy,
    clients: BTreeMap<String, ClientPolicy>,
    targets: BTreeMap<String, TargetServer>,
}

impl Config {
    /// Loads `explicit` when given (it must exist), else the first of the
    /// system and user config files that exists, else the defaults.
    pub fn discover(explicit: Option<&Path>) -> Result<Config, ConfigError> {
        if let Some(path) = explicit {
            return Config::load(path);
        }
        let user = dirs::config_dir().map(|d| d.join("walwarden").join("config.toml"));
        for candidate in [Some(PathBuf::from(SYSTEM_CONFIG)), user]
            .into_iter()
            .flatten()
        {
            if candidate.is_file() {
                return Config::load(&candidate);
            }
        }
        Ok(Config::default())
    }

    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_owned(),
            source,
        })?;
        Config::parse(&text, path)
    }

    pub fn parse(text: &str, path: &Path) -> Result<Config, ConfigError> {
        let raw: RawConfig = toml::from_str(text).map_err(|e| ConfigError::Parse {
            path: path.to_owned(),
            message: e.message().to_owned() + &span_hint(text, e.span()),
        })?;
        let defaults = resolve(&raw.defaults, &ClientPolicy::default(), "defaults", path)?;
        if raw.defaults.target.is_some() {
            return Err(ConfigError::Invalid {
                path: path.to_owned(),
                key: "defaults.target".into(),
                message: "a target server belongs to one client: move it to [clients.NAME.target]"
                    .into(),
            });
        }
        let mut clients = BTreeMap::new();
        let mut targets = BTreeMap::new();
        for (name, settings) in &raw.clients {
            let section = format!("clients.{name}");
            let policy = resolve(settings, &defaults, &section, path)?;
            clients.insert(name.clone(), policy);
            if let Some(target) = &settings.target {
                let target = resolve_target(target, &format!("{section}.target"), path)?;
                targets.insert(name.clone(), target);
            }
        }
        Ok(Config {
            source: Some(path.to_owned()),
            root: raw.root,
            defaults,
            clients,
            targets,
        })
    }

    /// The server to stop before restoring `client`, when its config names one.
    pub fn target_for(&self, client: &str) -> Option<&TargetServer> {
        self.targets.get(client)
    }

    pub fn policy_for(&self, client: &str) -> &ClientPolicy {
        self.clients.get(client).unwrap_or(&self.defaults)
    }

    /// The backup root: the command line or environment wins, then the config, then the default.
    pub fn root(&self, from_args: Option<&Path>) -> PathBuf {
        from_args
            .map(Path::to_owned)
            .or_else(|| self.root.clone())
            .unwrap_or_else(|| PathBuf::from(DEFAULT_ROOT))
    }
}

fn span_hint(text: &str, span: Option<std::ops::Range<usize>>) -> String {
    match span {
        Some(span) => {
            let line = text[..span.start.min(text.len())].matches('\n').count() + 1;
            format!(" (line {line})")
        }
        None => String::new(),
    }
}

fn resolve(
    raw: &RawSettings,
    base: &ClientPolicy,
    section: &str,
    path: &Path,
) -> Result<ClientPolicy, ConfigError> {
    let duration =
        |value: &Option<String>, key: &str, fallback: Duration| -> Result<Duration, ConfigError> {
            match value {
                None => Ok(fallback),
                Some(text) => humantime::parse_duration(text).map_err(|e| ConfigError::Invalid {
                    path: path.to_owned(),
                    key: format!("{section}.{key}"),
                    message: format!("{text:?} is not a duration such as \"60s\" or \"1h\": {e}"),
                }),
            }
        };
    for (index, gap) in raw.acknowledged_gaps.iter().enumerate() {
        for (key, name) in [("from", Some(&gap.from)), ("to", gap.to.as_ref())] {
            if let Some(name) = name
                && RawSegmentName::parse(name).is_none()
            {
                return Err(ConfigError::Invalid {
                    path: path.to_owned(),
                    key: format!("{section}.acknowledged_gaps[{index}].{key}"),
                    message: format!("{name:?} is not a segment name (24 hex digits)"),
                });
            }
        }
    }
    let acknowledged_gaps = if raw.acknowledged_gaps.is_empty() {
        base.acknowledged_gaps.clone()
    } else {
        raw.acknowledged_gaps.clone()
    };
    Ok(ClientPolicy {
        archive_timeout: duration(
            &raw.archive_timeout,
            "archive_timeout",
            base.archive_timeout,
        )?,
        stale_grace: duration(&raw.stale_grace, "stale_grace", base.stale_grace)?,
        partial_grace: duration(&raw.partial_grace, "partial_grace", base.partial_grace)?,
        drill_max_age: match &raw.drill_max_age {
            None => base.drill_max_age,
            Some(_) => Some(duration(
                &raw.drill_max_age,
                "drill_max_age",
                Duration::ZERO,
            )?),
        },
        rto: match &raw.rto {
            None => base.rto,
            Some(_) => Some(duration(&raw.rto, "rto", Duration::ZERO)?),
        },
        data_dir: raw.data_dir.clone().or_else(|| base.data_dir.clone()),
        local: LocalService {
            start: raw
                .local_start_command
                .clone()
                .or_else(|| base.local.start.clone()),
            stop: raw
                .local_stop_command
                .clone()
                .or_else(|| base.local.stop.clone()),
            log: raw.local_log.clone().or_else(|| base.local.log.clone()),
        },
        acknowledged_gaps,
        quota: match &raw.quota {
            None => base.quota,
            Some(text) => Some(parse_byte_size(text).ok_or_else(|| ConfigError::Invalid {
                path: path.to_owned(),
                key: format!("{section}.quota"),
                message: format!(
                    "{text:?} is not a size such as \"50G\", \"500M\" or \"1T\" (powers of 1024)"
                ),
            })?),
        },
    })
}

/// `50G`, `500M`, `1.5T`, `1024`: bytes, with K, M, G, T (optionally `B` or
/// `iB`) as powers of 1024; case ignored.
pub fn parse_byte_size(text: &str) -> Option<u64> {
    let text = text.trim().to_ascii_uppercase();
    let number_end = text
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(text.len());
    let (number, unit) = text.split_at(number_end);
    let shift = match unit.trim().trim_end_matches("IB").trim_end_matches('B') {
        "" => 0,
        "K" => 10,
        "M" => 20,
        "G" => 30,
        "T" => 40,
        _ => return None,
    };
    let value: f64 = number.parse().ok()?;
    let bytes = value * (1u64 << shift) as f64;
    (bytes.is_finite() && bytes >= 1.0 && bytes < u64::MAX as f64).then_some(bytes as u64)
}

fn resolve_target(
    raw: &RawTarget,
    section: &str,
    path: &Path,
) -> Result<TargetServer, ConfigError> {
    let invalid = |key: &str, message: String| ConfigError::Invalid {
        path: path.to_owned(),
        key: format!("{section}.{key}"),
        message,
    };
    // Host and user end up as ssh arguments: a leading '-' would read as an option.
    let name = |key: &str, value: &Option<String>| -> Result<String, ConfigError> {
        let Some(value) = value else {
            return Err(invalid(
                key,
                "missing: the target needs a host and a user".into(),
            ));
        };
        if value.is_empty()
            || value.starts_with('-')
            || value.contains('@')
            || value.chars().any(|c| c.is_whitespace() || c.is_control())
        {
            return Err(invalid(
                key,
                format!("{value:?} is not a {key} name (no spaces, '@' or leading '-')"),
            ));
        }
        Ok(value.clone())
    };
    let file = |key: &str, value: &Option<PathBuf>| -> Result<Option<PathBuf>, ConfigError> {
        match value {
            Some(p) if !(p.is_absolute() || p.starts_with("~")) => Err(invalid(
                key,
                format!(
                    "{} must be an absolute path (or start with ~/)",
                    p.display()
                ),
            )),
            // ssh reads UserKnownHostsFile as a list split on whitespace.
            Some(p) if p.to_string_lossy().chars().any(char::is_whitespace) => Err(invalid(
                key,
                format!(
                    "{} has a space, which ssh would read as two files",
                    p.display()
                ),
            )),
            _ => Ok(value.clone()),
        }
    };
    let non_empty = |key: &str, value: &Option<String>| -> Result<Option<String>, ConfigError> {
        match value {
            Some(text) if text.trim().is_empty() => Err(invalid(
                key,
                "is empty: leave it out for the default".into(),
            )),
            _ => Ok(value.clone()),
        }
    };
    let host = name("host", &raw.host)?;
    let user = name("user", &raw.user)?;
    let port = match raw.port {
        None => DEFAULT_SSH_PORT,
        Some(port) => u16::try_from(port)
            .ok()
            .filter(|p| *p > 0)
            .ok_or_else(|| invalid("port", format!("{port} is not a TCP port (1 to 65535)")))?,
    };
    let stop_command = match &raw.stop_command {
        None => DEFAULT_STOP_COMMAND.to_owned(),
        Some(command) if command.trim().is_empty() => {
            return Err(invalid(
                "stop_command",
                "is empty: leave it out for the default, or remove the target".into(),
            ));
        }
        Some(command) => command.clone(),
    };
    let connect_timeout = match &raw.connect_timeout {
        None => DEFAULT_CONNECT_TIMEOUT,
        Some(text) => {
            let timeout = humantime::parse_duration(text).map_err(|e| {
                invalid(
                    "connect_timeout",
                    format!("{text:?} is not a duration such as \"10s\": {e}"),
                )
            })?;
            // ssh counts whole seconds, and 0 would mean no timeout at all.
            if timeout < Duration::from_secs(1) {
                return Err(invalid(
                    "connect_timeout",
                    format!("{text:?} is shorter than ssh's smallest timeout, 1s"),
                ));
            }
            timeout
        }
    };
    Ok(TargetServer {
        host,
        port,
        user,
        stop_command,
        known_hosts: file("known_hosts", &raw.known_hosts)?,
        identity: file("identity", &raw.identity)?,
        connect_timeout,
        psql_command: non_empty("psql_command", &raw.psql_command)?,
        log_file: non_empty("log_file", &raw.log_file)?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn client_settings_override_defaults() {
        let text = r#"
root = "/srv/backups"
[defaults]
archive_timeout = "30m"
[clients.foo]
archive_timeout = "60s"
[[clients.foo.acknowledged_gaps]]
from = "000000010000000000000012"
note = "lost in the disk swap; superseded by the new base backup"
"#;
        let config = Config::parse(text, Path::new("x.toml")).unwrap();
        assert_eq!(config.root(None), PathBuf::from("/srv/backups"));
        assert_eq!(
            config.root(Some(Path::new("/other"))),
            PathBuf::from("/other")
        );
        assert_eq!(
            config.policy_for("foo").archive_timeout,
            Duration::from_secs(60)
        );
        assert_eq!(
            config.policy_for("bar").archive_timeout,
            Duration::from_secs(1800)
        );
        assert_eq!(
            config.policy_for("foo").stale_grace,
            Duration::from_secs(600)
        );
        let ack = &config.policy_for("foo").acknowledged_gaps[0];
        assert!(ack.covers("000000010000000000000012", "000000010000000000000012"));
        assert!(!ack.covers("000000010000000000000012", "000000010000000000000013"));
    }

    #[test]
    fn a_bad_duration_names_its_key() {
        let err = Config::parse(
            "[clients.foo]\narchive_timeout = \"soon\"\n",
            Path::new("c.toml"),
        )
        .unwrap_err();
        assert!(
            err.to_string().contains("clients.foo.archive_timeout"),
            "{err}"
        );
    }

    #[test]
    fn unknown_keys_and_bad_segment_names_are_refused() {
        let err = Config::parse("[defaults]\narchive_timout = \"1h\"\n", Path::new("c.toml"))
            .unwrap_err();
        assert!(err.to_string().contains("archive_timout"), "{err}");
        let err = Config::parse(
            "[[clients.a.acknowledged_gaps]]\nfrom = \"12\"\nnote = \"x\"\n",
            Path::new("c.toml"),
        )
        .unwrap_err();
        assert!(
            err.to_string()
                .contains("clients.a.acknowledged_gaps[0].from"),
            "{err}"
        );
    }

    #[test]
    fn a_target_server_gets_defaults_and_only_its_client_has_one() {
        let text = r#"
[clients.foo.target]
host = "db1.example.net"
user = "postgres"
[clients.bar.target]
host = "10.0.0.7"
port = 2222
user = "admin"
stop_command = "pg_ctlcluster {major} main stop"
known_hosts = "/etc/walwarden/known_hosts"
identity = "~/.ssh/walwarden_ed25519"
connect_timeout = "3s"
"#;
        let config = Config::parse(text, Path::new("t.toml")).unwrap();
        let foo = config.target_for("foo").unwrap();
        assert_eq!(foo, &TargetServer::new("db1.example.net", "postgres"));
        assert_eq!(
            foo.stop_command_for(15),
            "sudo -n pg_ctlcluster 15 main stop -m fast"
        );
        assert_eq!(foo.address(), "db1.example.net");
        let bar = config.target_for("bar").unwrap();
        assert_eq!(bar.port, 2222);
        assert_eq!(bar.address(), "10.0.0.7:2222");
        assert_eq!(bar.stop_command_for(12), "pg_ctlcluster 12 main stop");
        assert_eq!(
            bar.known_hosts.as_deref(),
            Some(Path::new("/etc/walwarden/known_hosts"))
        );
        assert_eq!(bar.connect_timeout, Duration::from_secs(3));
        assert!(config.target_for("baz").is_none());
    }

    #[test]
    fn bad_target_settings_name_their_key() {
        let cases = [
            ("user = \"postgres\"", "clients.a.target.host", "missing"),
            ("host = \"db\"", "clients.a.target.user", "missing"),
            (
                "host = \"-oProxyCommand=x\"\nuser = \"p\"",
                "clients.a.target.host",
                "leading '-'",
            ),
            (
                "host = \"db\"\nuser = \"p\"\nport = 70000",
                "clients.a.target.port",
                "1 to 65535",
            ),
            (
                "host = \"db\"\nuser = \"p\"\nconnect_timeout = \"500ms\"",
                "clients.a.target.connect_timeout",
                "1s",
            ),
            (
                "host = \"db\"\nuser = \"p\"\nconnect_timeout = \"soon\"",
                "clients.a.target.connect_timeout",
                "not a duration",
            ),
            (
                "host = \"db\"\nuser = \"p\"\nstop_command = \" \"",
                "clients.a.target.stop_command",
                "empty",
            ),
            (
                "host = \"db\"\nuser = \"p\"\nknown_hosts = \"kh\"",
                "clients.a.target.known_hosts",
                "absolute",
            ),
        ];
        for (body, key, why) in cases {
            let text = format!("[clients.a.target]\n{body}\n");
            let err = Config::parse(&text, Path::new("c.toml")).unwrap_err();
            let message = err.to_string();
            assert!(
                message.contains(key) && message.contains(why),
                "{body}: {message}"
            );
        }
        let err = Config::parse(
            "[clients.a.target]\nhost = \"db\"\nuser = \"p\"\nstrict = false\n",
            Path::new("c.toml"),
        )
        .unwrap_err();
        assert!(err.to_string().contains("strict"), "{err}");
        let err = Config::parse(
            "[defaults.target]\nhost = \"db\"\nuser = \"p\"\n",
            Path::new("c.toml"),
        )
        .unwrap_err();
        assert!(err.to_string().contains("defaults.target"), "{err}");
    }

    #[test]
    fn a_quota_is_a_size_and_a_bad_one_names_its_key() {
        let config = Config::parse(
            "[defaults]\nquota = \"1T\"\n[clients.foo]\nquota = \"50G\"\n",
            Path::new("q.toml"),
        )
        .unwrap();
        assert_eq!(config.policy_for("foo").quota, Some(50 << 30));
        assert_eq!(config.policy_for("bar").quota, Some(1 << 40));
        assert_eq!(Config::default().policy_for("x").quota, None);
        for (text, bytes) in [
            ("1024", 1024),
            ("1k", 1024),
            ("1.5GiB", 3 << 29),
            ("500 MB", 500 << 20),
        ] {
            assert_eq!(parse_byte_size(text), Some(bytes), "{text}");
        }
        for bad in ["", "G", "-1G", "0", "12X", "1e99T"] {
            assert_eq!(parse_byte_size(bad), None, "{bad}");
        }
        let err =
            Config::parse("[clients.foo]\nquota = \"lots\"\n", Path::new("c.toml")).unwrap_err();
        assert!(err.to_string().contains("clients.foo.quota"), "{err}");
    }

    #[test]
    fn an_explicit_missing_config_is_an_error() {
        let err = Config::discover(Some(Path::new("/nonexistent/walwarden.toml"))).unwrap_err();
        assert!(err.to_string().contains("/nonexistent/walwarden.toml"));
    }
}
