//! The optional TOML configuration: the backup root and per-client settings.
//!
//! Every setting is optional. Durations are humantime text (`90s`, `1h`,
//! `2days`); a bad value is reported with the key that holds it. Settings
//! under `[defaults]` apply to every client; `[clients.NAME]` overrides them.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;
use thiserror::Error;

use crate::wal::RawSegmentName;

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
    #[serde(default)]
    acknowledged_gaps: Vec<AcknowledgedGap>,
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

/// The settings that decide a client's health, defaults filled in.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientPolicy {
    /// How often the client's archive_command is expected to deliver a segment at least.
    pub archive_timeout: Duration,
    /// Slack on top of archive_timeout before a quiet archive is called stale.
    pub stale_grace: Duration,
    /// Age after which a `.part` file counts as an interrupted transfer.
    pub partial_grace: Duration,
    pub acknowledged_gaps: Vec<AcknowledgedGap>,
}

impl Default for ClientPolicy {
    fn default() -> Self {
        ClientPolicy {
            archive_timeout: Duration::from_secs(3600),
            stale_grace: Duration::from_secs(600),
            partial_grace: Duration::from_secs(600),
            acknowledged_gaps: Vec::new(),
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
        let mut clients = BTreeMap::new();
        for (name, settings) in &raw.clients {
            let policy = resolve(settings, &defaults, &format!("clients.{name}"), path)?;
            clients.insert(name.clone(), policy);
        }
        Ok(Config {
            source: Some(path.to_owned()),
            root: raw.root,
            defaults,
            clients,
        })
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

    /// Overrides the policy of every client (the demo and tests use short cadences).
    pub fn with_defaults(mut self, defaults: ClientPolicy) -> Config {
        self.defaults = defaults;
        self
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
            if let Some(name) = name {
                if RawSegmentName::parse(name).is_none() {
                    return Err(ConfigError::Invalid {
                        path: path.to_owned(),
                        key: format!("{section}.acknowledged_gaps[{index}].{key}"),
                        message: format!("{name:?} is not a segment name (24 hex digits)"),
                    });
                }
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
        acknowledged_gaps,
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
    fn an_explicit_missing_config_is_an_error() {
        let err = Config::discover(Some(Path::new("/nonexistent/walwarden.toml"))).unwrap_err();
        assert!(err.to_string().contains("/nonexistent/walwarden.toml"));
    }
}
