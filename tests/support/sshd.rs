//! A throwaway OpenSSH server on loopback for the SSH tests.
//!
//! * Debian's `/usr/sbin/sshd` (openssh-server; `.ci/test` installs it) runs in
//!   the foreground (`-D`) on `127.0.0.1:<free high port>` with a config, host
//!   key, client key and authorized_keys of its own in a temp dir. The system's
//!   sshd, its config and its keys are never used or touched.
//! * It lets in exactly one user, the one running the tests (root in CI, with
//!   `PermitRootLogin prohibit-password`), by the throwaway key only.
//! * `known_hosts` holds the server's real key; `wrong_known_hosts` another
//!   key for the same `[127.0.0.1]:port` (a "reinstalled or impersonated" server).
//! * A missing sshd, ssh or ssh-keygen makes `start` PANIC (tests fail, never skip).
//! * Drop stops the server and the per-connection processes it forked, by pid.

use std::fs;
use std::io::Read;
use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use nix::sys::signal::{Signal, kill, killpg};
use nix::unistd::Pid;
use walwarden::config::TargetServer;

pub const SSHD: &str = "/usr/sbin/sshd";
const READY_WITHIN: Duration = Duration::from_secs(10);

pub struct TestSshd {
    /// Owns every file below; removed on drop (after the server stopped).
    pub tmp: tempfile::TempDir,
    pub port: u16,
    /// The only user the server lets in.
    pub user: String,
    /// The private key authorized for `user`.
    pub client_key: PathBuf,
    /// The server's real host key for `[127.0.0.1]:port`.
    pub known_hosts: PathBuf,
    /// Another key for the same host and port.
    pub wrong_known_hosts: PathBuf,
    child: Child,
    log: PathBuf,
}

/// Who the server lets in, and from which authorized_keys.
#[derive(Debug, Clone, Default)]
pub struct SshdOptions {
    /// `None`: the user running the tests, by the throwaway key only.
    /// `Some(users)`: exactly these users, each by its own `~/.ssh/authorized_keys`
    /// with sshd's `StrictModes yes`, as a real backup server checks it.
    pub own_keys_for: Option<Vec<String>>,
}

impl TestSshd {
    /// Starts the server and waits (bounded) until it answers with its banner.
    pub fn start() -> TestSshd {
        TestSshd::start_with(SshdOptions::default())
    }

    /// [`TestSshd::start`] with other users and their own authorized_keys.
    pub fn start_with(options: SshdOptions) -> TestSshd {
        for tool in [SSHD, "/usr/bin/ssh", "/usr/bin/ssh-keygen"] {
            assert!(
                Path::new(tool).is_file(),
                "{tool} is missing: the SSH tests need Debian's openssh-server and openssh-client \
                 (`.ci/test` installs them: apt-get install openssh-server openssh-client)"
            );
        }
        let tmp = tempfile::Builder::new()
            .prefix("walwarden-sshd-")
            .tempdir()
            .expect("create the sshd temp dir");
        let dir = tmp.path().to_owned();
        let host_key = keygen(&dir, "host_ed25519");
        let client_key = keygen(&dir, "client_ed25519");
        let wrong_key = keygen(&dir, "wrong_ed25519");
        let authorized = dir.join("authorized_keys");
        fs::copy(client_key.with_extension("pub"), &authorized).expect("write authorized_keys");
        let user = current_user();
        let (allow_users, authorized_file, strict_modes) = match &options.own_keys_for {
            None => (user.clone(), authorized.display().to_string(), "no"),
            Some(users) => (users.join(" "), ".ssh/authorized_keys".to_owned(), "yes"),
        };
        let root = nix::unistd::geteuid().is_root();
        if root && !Path::new("/run/sshd").is_dir() {
            // sshd's privilege separation chroot: an empty root-owned folder, harmless.
            fs::create_dir_all("/run/sshd").expect("create /run/sshd");
        }
        let config = dir.join("sshd_config");
        let mut text = format!(
            "HostKey {host}\nPidFile {dir}/sshd.pid\nAuthorizedKeysFile {authorized_file}\n\
             StrictModes {strict_modes}\nPermitRootLogin prohibit-password\nPasswordAuthentication no\n\
             KbdInteractiveAuthentication no\nUsePAM no\nAuthenticationMethods publickey\n\
             AllowUsers {allow_users}\nPrintMotd no\nX11Forwarding no\nAllowTcpForwarding no\n",
            host = host_key.display(),
            dir = dir.display(),
        );
        // As Debian's sshd_config has it: scp (SFTP mode) and sftp reach a
        // forced command as this subsystem, which the receiver's tests refuse.
        text.push_str("Subsystem sftp /usr/lib/openssh/sftp-server\n");
        if openssh_at_least(9, 8) {
            // Newer sshd penalizes a source after failed logins: the tests fail some on purpose.
            text.push_str("PerSourcePenalties no\n");
        }
        fs::write(&config, text).expect("write sshd_config");
        let log = dir.join("sshd.log");
        let mut last_log = String::new();
        for _ in 0..5 {
            let port = free_port();
            let mut child = Command::new(SSHD)
                .arg("-D")
                .arg("-e")
                .arg("-f")
                .arg(&config)
                .arg("-p")
                .arg(port.to_string())
                .args(["-o", "ListenAddress=127.0.0.1"])
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(fs::File::create(&log).expect("create sshd.log"))
                .process_group(0)
                .spawn()
                .unwrap_or_else(|e| panic!("cannot start {SSHD}: {e}"));
            if wait_ready(&mut child, port) {
                let host_line = public_key(&host_key);
                let known_hosts = dir.join("known_hosts");
                let wrong_known_hosts = dir.join("wrong_known_hosts");
                fs::write(&known_hosts, format!("[127.0.0.1]:{port} {host_line}\n"))
                    .expect("write known_hosts");
                fs::write(
                    &wrong_known_hosts,
                    format!("[127.0.0.1]:{port} {}\n", public_key(&wrong_key)),
                )
                .expect("write wrong_known_hosts");
                return TestSshd {
                    tmp,
                    port,
                    user,
                    client_key,
                    known_hosts,
                    wrong_known_hosts,
                    child,
                    log,
                };
            }
            stop(&mut child);
            last_log = fs::read_to_string(&log).unwrap_or_default();
            if !last_log.contains("Address already in use") {
                break;
            }
        }
        panic!("the test sshd did not start within {READY_WITHIN:?}; its log:\n{last_log}");
    }

    /// A target for this server, trusting its real host key, logging in with the test key.
    pub fn target(&self) -> TargetServer {
        let mut target = TargetServer::new("127.0.0.1", &self.user);
        target.port = self.port;
        target.known_hosts = Some(self.known_hosts.clone());
        target.identity = Some(self.client_key.clone());
        target.connect_timeout = Duration::from_secs(5);
        target
    }

    /// Stops the server answering, as a hung backup server does: the
    /// listener and every connection it forked get SIGSTOP (the kernel still
    /// accepts TCP connections; no SSH banner comes).
    pub fn freeze(&self) {
        let _ = kill(Pid::from_raw(self.child.id() as i32), Signal::SIGSTOP);
        for pid in children_of(self.child.id()) {
            let _ = kill(Pid::from_raw(pid), Signal::SIGSTOP);
        }
    }

    /// Undoes [`TestSshd::freeze`].
    pub fn thaw(&self) {
        for pid in children_of(self.child.id()) {
            let _ = kill(Pid::from_raw(pid), Signal::SIGCONT);
        }
        let _ = kill(Pid::from_raw(self.child.id() as i32), Signal::SIGCONT);
    }

    /// The server's log so far (shown when a test fails).
    pub fn log(&self) -> String {
        fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for TestSshd {
    fn drop(&mut self) {
        // A frozen server ignores SIGTERM until it runs again.
        self.thaw();
        // Connection handlers are forked children in their own sessions: stop them by pid too.
        for pid in children_of(self.child.id()) {
            let _ = kill(Pid::from_raw(pid), Signal::SIGTERM);
        }
        stop(&mut self.child);
    }
}

/// SIGTERM to the server's process group, SIGKILL after 5 s; always reaped.
fn stop(child: &mut Child) {
    let pid = child.id() as i32;
    let _ = killpg(Pid::from_raw(pid), Signal::SIGTERM);
    let deadline = Instant::now() + Duration::from_secs(5);
    while Instant::now() < deadline {
        if let Ok(Some(_)) = child.try_wait() {
            return;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let _ = killpg(Pid::from_raw(pid), Signal::SIGKILL);
    let _ = child.wait();
}

fn wait_ready(child: &mut Child, port: u16) -> bool {
    let deadline = Instant::now() + READY_WITHIN;
    let address = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
    while Instant::now() < deadline {
        if let Ok(Some(_)) = child.try_wait() {
            return false;
        }
        if let Ok(mut stream) = TcpStream::connect_timeout(&address, Duration::from_millis(500)) {
            let _ = stream.set_read_timeout(Some(Duration::from_secs(2)));
            let mut banner = [0u8; 4];
            if stream.read_exact(&mut banner).is_ok() && &banner == b"SSH-" {
                return true;
            }
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    false
}

/// A port nothing listens on a moment ago (sshd retries on a race).
pub fn free_port() -> u16 {
    TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("bind 127.0.0.1:0")
}

/// An ed25519 key pair without passphrase: `dir/name` and `dir/name.pub`.
pub fn keygen(dir: &Path, name: &str) -> PathBuf {
    let path = dir.join(name);
    let output = Command::new("ssh-keygen")
        .args([
            "-q",
            "-t",
            "ed25519",
            "-N",
            "",
            "-C",
            "walwarden-test",
            "-f",
        ])
        .arg(&path)
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("cannot run ssh-keygen: {e}"));
    assert!(
        output.status.success(),
        "ssh-keygen {name} failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    path
}

/// `ssh-ed25519 AAAA...` of a key pair's public half.
fn public_key(private: &Path) -> String {
    let text = fs::read_to_string(private.with_extension("pub")).expect("read a public key");
    text.split_whitespace()
        .take(2)
        .collect::<Vec<_>>()
        .join(" ")
}

fn current_user() -> String {
    nix::unistd::User::from_uid(nix::unistd::geteuid())
        .ok()
        .flatten()
        .map(|u| u.name)
        .expect("the current user has a name in /etc/passwd")
}

/// Pids whose parent is `pid`, from /proc.
fn children_of(pid: u32) -> Vec<i32> {
    let Ok(entries) = fs::read_dir("/proc") else {
        return Vec::new();
    };
    entries
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<i32>().ok())
        .filter(|child| {
            fs::read_to_string(format!("/proc/{child}/stat"))
                .ok()
                .and_then(|stat| {
                    let after = stat.rsplit_once(')')?.1;
                    after.split_whitespace().nth(1)?.parse::<u32>().ok()
                })
                == Some(pid)
        })
        .collect()
}

/// The OpenSSH version from `ssh -V` ("OpenSSH_9.2p1 Debian-2+deb12u3, ...").
fn openssh_at_least(major: u32, minor: u32) -> bool {
    let output = Command::new("ssh").arg("-V").output();
    let text = output
        .map(|o| String::from_utf8_lossy(&o.stderr).into_owned())
        .unwrap_or_default();
    let version = text
        .strip_prefix("OpenSSH_")
        .and_then(|v| v.split(|c: char| !c.is_ascii_digit() && c != '.').next())
        .unwrap_or("");
    let mut parts = version.split('.').map(|p| p.parse::<u32>().unwrap_or(0));
    let found = (parts.next().unwrap_or(0), parts.next().unwrap_or(0));
    found >= (major, minor)
}
