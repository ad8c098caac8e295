//! The target server's side of onboarding, as text to paste: the
//! postgresql.conf lines with an archive_command that fits this backup
//! server (quoted for both shells and for PostgreSQL), the pg_basebackup
//! command and the copy of its tarballs.

use std::path::PathBuf;

use super::SetupRequest;
use crate::pg::conf::conf_string;
use crate::pg::local::shell_quote;

/// What ssh on the target is told for every command to the backup server:
/// never prompt, give up on a dead network within 10 s, and notice a
/// connection that died mid-upload within 45 s (PostgreSQL then retries).
pub const SSH_OPTIONS: [&str; 8] = [
    "-o",
    "BatchMode=yes",
    "-o",
    "ConnectTimeout=10",
    "-o",
    "ServerAliveInterval=15",
    "-o",
    "ServerAliveCountMax=3",
];
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
    /// The key's forced command is the receiver (the default): the target
    /// sends `put-wal` and `put-base`; else the tutorial's shell commands.
    pub via_receiver: bool,
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
            via_receiver: matches!(request.access, super::KeyAccess::Receiver(_)),
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

    /// `ssh` with the options every command to the backup server gets (no
    /// prompt; give up on a dead network within 10 s and on a connection
    /// that died mid-upload within 45 s), the route's own options and the
    /// destination; with `percent`, `%` doubled for archive_command.
    pub(super) fn ssh_prefix(&self, percent: bool) -> Vec<String> {
        let esc = |word: String| if percent { escape_percent(&word) } else { word };
        let mut words: Vec<String> = std::iter::once("ssh")
            .chain(SSH_OPTIONS)
            .map(str::to_owned)
            .collect();
        words.extend(self.ssh_words("-p").into_iter().map(esc));
        words.push(esc(shell_quote(&self.destination())));
        words
    }

    fn destination(&self) -> String {
        format!("{}@{}", self.user, self.backup_host)
    }

    /// The archive_command value (before postgresql.conf quoting), the
    /// tutorial's sequence made safe to retry: the file arrives under a
    /// unique `.part` name and is checked (`gzip -t`, or its byte count for a
    /// plain copy); a name already archived with identical content is
    /// success (PostgreSQL retries a segment whose exit status was lost, and
    /// `test ! -f` would fail it for ever), with other content it is refused
    /// with a message that reaches PostgreSQL's log; otherwise it is synced,
    /// linked into place (a link never replaces a file) and its folder
    /// synced. ssh gives up on a server that stops answering instead of
    /// hanging the archiver. Paths are quoted for the backup server's shell
    /// and `%` doubled except in `%p`/`%f`; the folder is named once, to stay
    /// short (PostgreSQL 15 and older cut the expanded command at 1023 bytes).
    pub fn archive_command(&self) -> String {
        if self.via_receiver {
            return self.receiver_archive_command();
        }
        self.shell_archive_command()
    }

    /// The archive_command for the tutorial's plain shell access (see
    /// [`ArchiveRoute::archive_command`]).
    fn shell_archive_command(&self) -> String {
        let wal = escape_percent(&shell_quote(&self.wal_dir.to_string_lossy()));
        let (suffix, producer, complete, same, size) = if self.compress {
            (
                ".gz",
                "gzip -c -9 -n %p",
                r#"gzip -t "$t""#,
                r#"test "$(gzip -dc "$t" | cksum)" = "$(gzip -dc "$f" | cksum)""#,
                None,
            )
        } else {
            (
                "",
                "cat %p",
                r#"test "$(wc -c < "$t")" -eq "$n""#,
                r#"cmp -s "$t" "$f""#,
                // The size as the target sees it, sent ahead of the script.
                Some(r#""n=$(wc -c < %p);""#),
            )
        };
        let remote = format!(
            "w={wal}; f=$w/%f{suffix}; t=$f.$$.part; \
             if ! {{ cat > \"$t\" && {complete}; }}; then rm -f \"$t\"; \
             echo \"walwarden: %f{suffix} arrived incomplete\" >&2; exit 1; fi; \
             if test -e \"$f\"; then if {same}; then rm -f \"$t\"; exit 0; fi; rm -f \"$t\"; \
             echo \"walwarden: $f is already archived with other content: not overwritten\" >&2; exit 1; fi; \
             sync \"$t\" && ln \"$t\" \"$f\" && rm -f \"$t\" && sync \"$w\""
        );
        let mut words = self.ssh_prefix(true);
        words.extend(size.map(str::to_owned));
        // One word for the target's shell: `$` and quotes are the backup server's.
        words.push(format!("'{}'", remote.replace('\'', "'\\''")));
        format!("{producer} | {}", words.join(" "))
    }

    /// The archive_command for the receiver: the segment (gzip'ed unless
    /// `compress` is off) piped to `put-wal`; the receiver checks it, stores
    /// it without ever replacing a name, and answers an identical re-send with 0.
    fn receiver_archive_command(&self) -> String {
        let ssh = self.ssh_prefix(true).join(" ");
        if self.compress {
            format!("gzip -c %p | {ssh} 'put-wal %f.gz'")
        } else {
            format!("{ssh} 'put-wal %f' < %p")
        }
    }

    /// `archive_command = '…'`, ready for postgresql.conf.
    pub fn archive_command_setting(&self) -> String {
        format!("archive_command = {}", conf_string(&self.archive_command()))
    }

    /// The target's base backup, then its upload and finish through the
    /// receiver, for a person to paste on the target server as postgres:
    /// pg_basebackup into `scratch`, then one subshell that sends each file
    /// with `put-base` under an ID made of the time, and `finish-base`
    /// (which verifies it and makes it current).
    fn receiver_base_commands(&self, scratch: &str) -> Vec<String> {
        let ssh = self.ssh_prefix(false).join(" ");
        vec![
            self.basebackup_command(scratch),
            format!(
                "(set -e; cd {}; id=$(date -u +%Y%m%dT%H%M%SZ); \
                 for f in base.tar.gz pg_wal.tar.gz backup_manifest; do \
                 if [ -f \"$f\" ]; then {ssh} \"put-base $id $f\" < \"$f\"; fi; done; \
                 {ssh} \"finish-base $id\")",
                shell_quote(scratch)
            ),
        ]
    }

    /// How long the command gets once PostgreSQL fills in `%p` and `%f`
    /// (`%%` becomes `%`): PostgreSQL 15 and older cut it at 1023 bytes.
    pub fn expanded_archive_command_len(&self) -> usize {
        self.archive_command()
            .replace("%%", "%")
            .replace("%p", "pg_wal/000000010000000000000001")
            .replace("%f", "000000010000000000000001")
            .len()
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
            conf_string(&self.archive_command())
        )
    }

    /// The base backup on the target and its way here: through the
    /// receiver (uploaded, verified, made current in one rename), or the
    /// tutorial's scp into base/.
    pub fn base_commands(&self, scratch: &str) -> Vec<String> {
        if self.via_receiver {
            self.receiver_base_commands(scratch)
        } else {
            vec![self.basebackup_command(scratch), self.copy_command(scratch)]
        }
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
             \n1. As postgres, once: `ssh {user}@{host}{probe}` and accept the host key after checking its fingerprint \
             (the archive_command runs with BatchMode and never answers the prompt){probe_says}.\n\
             \n2. postgresql.conf (archive_mode needs a restart):\n\n{conf}\
             \n3. The base backup, then its copy here:\n\n{base}\
             \n4. For the 3-5 minute verification, set archive_timeout = {verify} and reload, run \
             `walwarden verify {client}` here, then set it back to {timeout} and reload.",
            user = self.user,
            host = self.backup_host,
            probe = if self.via_receiver { " copy-test" } else { "" },
            probe_says = if self.via_receiver {
                "; it answers `copy-test ok`: the key reaches the receiver, which can write, sync and rename in this client's folders"
            } else {
                ""
            },
            conf = self
                .conf_lines()
                .lines()
                .map(|l| format!("    {l}\n"))
                .collect::<String>(),
            base = self
                .base_commands(scratch)
                .iter()
                .map(|l| format!("    {l}\n"))
                .collect::<String>(),
            verify = VERIFICATION_ARCHIVE_TIMEOUT,
            timeout = self.archive_timeout,
        )
    }
}

fn escape_percent(text: &str) -> String {
    text.replace('%', "%%")
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;
    use std::process::Command;

    /// The tutorial's shell access (`setup --shell-access`): the commands
    /// tested here; the receiver's are in `receiver_lines`.
    fn route() -> ArchiveRoute {
        let mut request =
            SetupRequest::new(Path::new("/var/lib/postgresql/backups"), "foo").unwrap();
        request.access = super::super::KeyAccess::Shell;
        ArchiveRoute::for_request(&request, "backup1")
    }

    /// Runs `route`'s archive_command for a file with `content`, as
    /// PostgreSQL would on the target, with ssh replaced by a local `sh -c`
    /// of the words it would send: (exit code, stderr).
    fn archive(route: &ArchiveRoute, scratch: &Path, content: &[u8]) -> (i32, String) {
        let pg_wal = scratch.join("pg_wal");
        std::fs::create_dir_all(&pg_wal).unwrap();
        std::fs::write(pg_wal.join("000000010000000000000007"), content).unwrap();
        let fake_ssh = scratch.join("fake-ssh");
        std::fs::write(&fake_ssh, "#!/bin/sh\nexec sh -c \"$*\"\n").unwrap();
        Command::new("chmod")
            .arg("755")
            .arg(&fake_ssh)
            .status()
            .unwrap();
        let command = route.archive_command();
        let destination = route.destination();
        let (before, after) = command.split_once(&format!(" {destination}")).unwrap();
        let (producer, _ssh) = before.split_once(" | ").unwrap();
        let local = format!("{producer} | {}{after}", fake_ssh.display())
            .replace("%%", "\u{0}")
            .replace("%p", "pg_wal/000000010000000000000007")
            .replace("%f", "000000010000000000000007")
            .replace('\u{0}', "%");
        let out = Command::new("sh")
            .arg("-c")
            .arg(&local)
            .current_dir(scratch)
            .output()
            .unwrap();
        (
            out.status.code().unwrap_or(-1),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    }

    fn listing(dir: &Path) -> Vec<String> {
        let mut names: Vec<String> = std::fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        names
    }

    #[test]
    fn a_retry_of_an_identical_file_succeeds_and_other_content_is_refused() {
        for compress in [true, false] {
            let scratch = tempfile::tempdir().unwrap();
            let wal = scratch.path().join("it's a \\ 100% wal");
            std::fs::create_dir(&wal).unwrap();
            let mut route = route();
            route.wal_dir = wal.clone();
            route.compress = compress;
            let name = if compress {
                "000000010000000000000007.gz"
            } else {
                "000000010000000000000007"
            };
            let segment = vec![7u8; 64 * 1024];
            assert_eq!(
                archive(&route, scratch.path(), &segment),
                (0, String::new())
            );
            assert_eq!(listing(&wal), vec![name], "compress {compress}");
            let stored = std::fs::read(wal.join(name)).unwrap();
            // The exit status was lost: PostgreSQL sends the same file again.
            assert_eq!(
                archive(&route, scratch.path(), &segment),
                (0, String::new())
            );
            // Another server's segment of that name: refused, loudly, nothing replaced.
            let (code, stderr) = archive(&route, scratch.path(), &[8u8; 64 * 1024]);
            assert_eq!(code, 1, "compress {compress}");
            assert!(
                stderr.contains("already archived with other content"),
                "{stderr}"
            );
            assert_eq!(std::fs::read(wal.join(name)).unwrap(), stored);
            assert_eq!(listing(&wal), vec![name], "no .part left behind");
        }
    }

    #[test]
    fn an_incomplete_transfer_is_refused_and_leaves_nothing() {
        let scratch = tempfile::tempdir().unwrap();
        let wal = scratch.path().join("wal");
        std::fs::create_dir(&wal).unwrap();
        let mut route = route();
        route.wal_dir = wal.clone();
        route.compress = false;
        // What arrives is cut short of what the target counted.
        let command = route.archive_command();
        let cut = command.replacen("cat %p |", "head -c 100 %p |", 1);
        assert_ne!(cut, command);
        let pg_wal = scratch.path().join("pg_wal");
        std::fs::create_dir_all(&pg_wal).unwrap();
        std::fs::write(pg_wal.join("000000010000000000000007"), [1u8; 4096]).unwrap();
        let (before, after) = cut
            .split_once(&format!(" {}", route.destination()))
            .unwrap();
        let (producer, _) = before.split_once(" | ").unwrap();
        let local = format!("{producer} | sh -c \"$(printf '%s ' {after})\"")
            .replace("%p", "pg_wal/000000010000000000000007")
            .replace("%f", "000000010000000000000007");
        let out = Command::new("sh")
            .arg("-c")
            .arg(&local)
            .current_dir(scratch.path())
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(1));
        assert!(
            String::from_utf8_lossy(&out.stderr).contains("arrived incomplete"),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(listing(&wal).is_empty(), "{:?}", listing(&wal));
    }

    #[test]
    fn ssh_gives_up_on_a_silent_server_and_the_command_stays_short() {
        let route = route();
        let command = route.archive_command();
        for option in [
            "-o BatchMode=yes",
            "-o ConnectTimeout=10",
            "-o ServerAliveInterval=15",
            "-o ServerAliveCountMax=3",
        ] {
            assert!(command.contains(option), "{option}: {command}");
        }
        assert!(
            route.expanded_archive_command_len() < 1023,
            "{}",
            route.expanded_archive_command_len()
        );
    }

    #[test]
    fn awkward_paths_are_quoted_for_both_shells_and_postgresql() {
        let mut route = route();
        route.wal_dir = PathBuf::from("/srv/it's 100% \\ x/wal");
        route.ssh_port = Some(2222);
        let command = route.archive_command();
        assert!(command.contains("-p 2222"), "{command}");
        assert!(command.contains("100%%"), "{command}");
        assert!(!command.contains("100%/"), "{command}");
        // postgresql.conf: quotes and backslashes doubled, nothing else changed.
        let conf = route.conf_lines();
        let value = conf
            .lines()
            .find_map(|l| l.strip_prefix("archive_command = "))
            .unwrap();
        let unquoted = value[1..value.len() - 1]
            .replace("''", "'")
            .replace("\\\\", "\\");
        assert_eq!(unquoted, command);
    }

    fn receiver_route() -> ArchiveRoute {
        let request = SetupRequest::new(Path::new("/var/lib/postgresql/backups"), "shop").unwrap();
        ArchiveRoute::for_request(&request, "backup1")
    }

    #[test]
    fn the_archive_command_sends_to_the_receiver_with_timeouts() {
        let mut route = receiver_route();
        assert_eq!(
            route.archive_command(),
            "gzip -c %p | ssh -o BatchMode=yes -o ConnectTimeout=10 -o ServerAliveInterval=15 -o ServerAliveCountMax=3 shopbackup@backup1 'put-wal %f.gz'"
        );
        assert_eq!(
            route.archive_command_setting(),
            "archive_command = 'gzip -c %p | ssh -o BatchMode=yes -o ConnectTimeout=10 -o ServerAliveInterval=15 -o ServerAliveCountMax=3 shopbackup@backup1 ''put-wal %f.gz'''"
        );
        route.compress = false;
        route.ssh_port = Some(2222);
        route.identity = Some("/var/lib/postgresql/.ssh/100%_key".into());
        route.known_hosts = Some("/etc/walwarden/known hosts".into());
        assert_eq!(
            route.archive_command(),
            "ssh -o BatchMode=yes -o ConnectTimeout=10 -o ServerAliveInterval=15 -o ServerAliveCountMax=3 -p 2222 -i /var/lib/postgresql/.ssh/100%%_key -o 'UserKnownHostsFile=/etc/walwarden/known hosts' shopbackup@backup1 'put-wal %f' < %p"
        );
        assert_eq!(conf_string("a'b\\c"), "'a''b\\\\c'");
    }

    #[test]
    fn the_base_upload_puts_each_file_then_finishes() {
        let lines = receiver_route().base_commands("/tmp/backup now");
        assert_eq!(lines.len(), 2);
        assert!(
            lines[0].starts_with("pg_basebackup --pgdata='/tmp/backup now' --format=tar --gzip"),
            "{}",
            lines[0]
        );
        assert!(lines[1].contains("cd '/tmp/backup now';"), "{}", lines[1]);
        assert!(
            lines[1].contains("\"put-base $id $f\" < \"$f\""),
            "{}",
            lines[1]
        );
        assert!(
            lines[1].ends_with("shopbackup@backup1 \"finish-base $id\")"),
            "{}",
            lines[1]
        );
    }

    #[test]
    fn conf_lines_name_every_setting() {
        let conf = route().conf_lines();
        for needle in [
            "wal_level = replica",
            "archive_mode = on",
            "archive_timeout = 3600",
            "archive_command = 'gzip -c -9 -n %p | ssh",
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
