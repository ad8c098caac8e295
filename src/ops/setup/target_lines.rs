//! The target server's side of onboarding, as text to paste: the
//! postgresql.conf lines with an archive_command that fits this backup
//! server (quoted for both shells and for PostgreSQL), the pg_basebackup
//! command and the copy of its tarballs.

use std::path::PathBuf;

use super::SetupRequest;
use crate::pg::local::shell_quote;
use crate::pg::target::{PRODUCTION_ARCHIVE_TIMEOUT, VERIFICATION_ARCHIVE_TIMEOUT};

/// How the target server reaches the backup server.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ArchiveRoute {
    pub user: String,
    pub backup_host: String,
    pub ssh_port: Option<u16>,
    /// `-i FILE`: the key the target's postgres user sends with, if not its default.
    pub identity: Option<PathBuf>,
    /// `-o UserKnownHostsFile=FILE`, if not the postgres user's own.
    pub known_hosts: Option<PathBuf>,
    /// `-F FILE`, if not the postgres user's ~/.ssh/config.
    pub ssh_config: Option<PathBuf>,
    pub base_dir: PathBuf,
    pub wal_dir: PathBuf,
    pub compress: bool,
    pub archive_timeout: u64,
}

impl ArchiveRoute {
    pub fn for_request(request: &SetupRequest, backup_host: &str) -> ArchiveRoute {
        ArchiveRoute {
            user: request.user.clone(),
            backup_host: backup_host.to_owned(),
            ssh_port: None,
            identity: None,
            known_hosts: None,
            ssh_config: None,
            base_dir: request.base_dir(),
            wal_dir: request.wal_dir(),
            compress: true,
            archive_timeout: PRODUCTION_ARCHIVE_TIMEOUT,
        }
    }

    /// `ssh [options] user@host`, each word quoted for the target's shell.
    fn ssh_words(&self, port_flag: &str) -> Vec<String> {
        let mut words = Vec::new();
        if let Some(config) = &self.ssh_config {
            words.push("-F".to_owned());
            words.push(shell_quote(&config.to_string_lossy()));
        }
        if let Some(port) = self.ssh_port {
            words.push(port_flag.to_owned());
            words.push(port.to_string());
        }
        if let Some(identity) = &self.identity {
            words.push("-i".to_owned());
            words.push(shell_quote(&identity.to_string_lossy()));
        }
        if let Some(known_hosts) = &self.known_hosts {
            words.push("-o".to_owned());
            words.push(shell_quote(&format!(
                "UserKnownHostsFile={}",
                known_hosts.display()
            )));
        }
        words
    }

    fn destination(&self) -> String {
        format!("{}@{}", self.user, self.backup_host)
    }

    /// The archive_command value (before postgresql.conf quoting): the
    /// tutorial's sequence, `test ! -f`, `.part`, (gzip -t), sync, rename, with
    /// paths quoted for the backup server's shell and `%` doubled except `%p`/`%f`.
    pub fn archive_command(&self) -> String {
        let wal = escape_percent(&shell_quote(&self.wal_dir.to_string_lossy()));
        let (suffix, producer) = if self.compress {
            (".gz", "gzip -c -9 %p")
        } else {
            ("", "cat %p")
        };
        let target = format!("{wal}/%f{suffix}");
        let part = format!("{target}.part");
        let mut remote = format!("set -e; test ! -f {target}; cat > {part}; ");
        if self.compress {
            remote.push_str(&format!("gzip -t {part}; "));
        }
        remote.push_str(&format!("sync {part}; mv {part} {target}"));
        let mut words = vec!["ssh".to_owned(), "-o".into(), "BatchMode=yes".into()];
        words.extend(self.ssh_words("-p").into_iter().map(|w| escape_percent(&w)));
        words.push(escape_percent(&self.destination()));
        // The remote command is one word for the target's shell: double quotes
        // when that is safe (as the tutorial writes it), else single quotes.
        let remote_word = if remote.contains(['"', '$', '`', '\\']) {
            format!("'{}'", remote.replace('\'', "'\\''"))
        } else {
            format!("\"{remote}\"")
        };
        words.push(remote_word);
        format!("{producer} | {}", words.join(" "))
    }

    /// The postgresql.conf lines for the target server.
    pub fn conf_lines(&self) -> String {
        format!(
            "wal_level = replica\n\
             archive_mode = on            # changing it needs a restart\n\
             archive_timeout = {}        # {}; set 60 only for the 3-5 minute verification, then back\n\
             archive_command = {}\n",
            self.archive_timeout,
            crate::display::short_duration(std::time::Duration::from_secs(self.archive_timeout)),
            conf_quote(&self.archive_command())
        )
    }

    /// pg_basebackup on the target server into an empty scratch folder.
    pub fn basebackup_command(&self, scratch: &str) -> String {
        format!(
            "pg_basebackup --pgdata={} --format=tar --gzip --compress=9 --checkpoint=fast \
             --label=base_backup --progress --verbose --username=[trusted db user]",
            shell_quote(scratch)
        )
    }

    /// The copy of the tarballs (and the manifest, PostgreSQL 13+) to the backup server.
    pub fn copy_command(&self, scratch: &str) -> String {
        let mut words = vec!["scp".to_owned()];
        words.extend(self.ssh_words("-P"));
        for file in ["base.tar.gz", "pg_wal.tar.gz", "backup_manifest"] {
            words.push(shell_quote(&format!(
                "{}/{file}",
                scratch.trim_end_matches('/')
            )));
        }
        words.push(format!(
            "{}:{}/",
            self.destination(),
            shell_quote(&self.base_dir.to_string_lossy())
        ));
        words.join(" ")
    }
}

impl ArchiveRoute {
    /// Everything to do on the target server, in order, ready to paste.
    pub fn target_instructions(&self, client: &str, scratch: &str) -> String {
        format!(
            "On the target server of {client}:\n\
             \n1. As postgres, once: `ssh {user}@{host}` and accept the host key after checking its fingerprint \
             (the archive_command runs with BatchMode and never answers the prompt).\n\
             \n2. postgresql.conf (archive_mode needs a restart):\n\n{conf}\
             \n3. The base backup, then its copy here:\n\n    {base}\n    {copy}\n\
             \n4. For the 3-5 minute verification, set archive_timeout = {verify} and reload, run \
             `walwarden verify {client}` here, then set it back to {timeout} and reload.",
            user = self.user,
            host = self.backup_host,
            conf = self
                .conf_lines()
                .lines()
                .map(|l| format!("    {l}\n"))
                .collect::<String>(),
            base = self.basebackup_command(scratch),
            copy = self.copy_command(scratch),
            verify = VERIFICATION_ARCHIVE_TIMEOUT,
            timeout = self.archive_timeout,
        )
    }
}

fn escape_percent(text: &str) -> String {
    text.replace('%', "%%")
}

/// A postgresql.conf string value: single quotes, doubled inside.
pub fn conf_quote(value: &str) -> String {
    format!("'{}'", value.replace('\'', "''"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;
    use std::process::Command;

    fn route() -> ArchiveRoute {
        let request = SetupRequest::new(Path::new("/var/lib/postgresql/backups"), "foo").unwrap();
        ArchiveRoute::for_request(&request, "backup1")
    }

    #[test]
    fn compressed_archive_command_is_the_tutorials_sequence() {
        assert_eq!(
            route().archive_command(),
            "gzip -c -9 %p | ssh -o BatchMode=yes foobackup@backup1 \"set -e; \
             test ! -f /var/lib/postgresql/backups/foo/wal/%f.gz; \
             cat > /var/lib/postgresql/backups/foo/wal/%f.gz.part; \
             gzip -t /var/lib/postgresql/backups/foo/wal/%f.gz.part; \
             sync /var/lib/postgresql/backups/foo/wal/%f.gz.part; \
             mv /var/lib/postgresql/backups/foo/wal/%f.gz.part /var/lib/postgresql/backups/foo/wal/%f.gz\""
        );
    }

    #[test]
    fn plain_archive_command_has_no_gzip() {
        let mut route = route();
        route.compress = false;
        let command = route.archive_command();
        assert!(command.starts_with("cat %p | ssh"), "{command}");
        assert!(!command.contains("gzip"), "{command}");
        assert!(command.contains("mv /var/lib/postgresql/backups/foo/wal/%f.part /var/lib/postgresql/backups/foo/wal/%f\""));
    }

    #[test]
    fn awkward_paths_are_quoted_for_both_shells_and_postgresql() {
        let mut route = route();
        route.wal_dir = PathBuf::from("/srv/it's 100%/wal");
        route.ssh_port = Some(2222);
        let command = route.archive_command();
        // The remote word is single-quoted (it holds a quote); `%` is doubled for PostgreSQL.
        assert!(command.contains("-p 2222"), "{command}");
        assert!(command.contains("100%%"), "{command}");
        assert!(!command.contains("100%/"), "{command}");
        // Undo PostgreSQL's %% and check the sh words round-trip through a real shell.
        let shell_text = command
            .replace("%%", "\u{0}")
            .replace("%f", "SEG")
            .replace("%p", "pg_wal/SEG")
            .replace('\u{0}', "%");
        let remote = shell_text.split_once("backup1 ").unwrap().1;
        let out = Command::new("sh")
            .args(["-c", &format!("printf '%s' {remote}")])
            .output()
            .unwrap();
        let remote_script = String::from_utf8(out.stdout).unwrap();
        assert!(
            remote_script.contains("test ! -f '/srv/it'\\''s 100%/wal'/SEG.gz;"),
            "{remote_script}"
        );
        // postgresql.conf: single quotes doubled, and nothing else changed.
        let conf = route.conf_lines();
        let value = conf
            .lines()
            .find_map(|l| l.strip_prefix("archive_command = "))
            .unwrap();
        let unquoted = value[1..value.len() - 1].replace("''", "'");
        assert_eq!(unquoted, command);
    }

    #[test]
    fn conf_lines_name_every_setting() {
        let conf = route().conf_lines();
        for needle in [
            "wal_level = replica",
            "archive_mode = on",
            "archive_timeout = 3600",
            "archive_command = 'gzip -c -9 %p | ssh",
        ] {
            assert!(conf.contains(needle), "{needle} missing:\n{conf}");
        }
    }

    #[test]
    fn basebackup_and_copy_commands() {
        let route = route();
        let base = route.basebackup_command("/tmp/backups");
        assert!(base.contains("--format=tar --gzip --compress=9 --checkpoint=fast"));
        assert!(base.contains("--progress"));
        let copy = route.copy_command("/tmp/backups/");
        assert_eq!(
            copy,
            "scp /tmp/backups/base.tar.gz /tmp/backups/pg_wal.tar.gz /tmp/backups/backup_manifest \
             foobackup@backup1:/var/lib/postgresql/backups/foo/base/"
        );
    }
}
