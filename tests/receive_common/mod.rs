//! What the receiver's tests share: the real `walwarden receive` binary run
//! as sshd would run it (SSH_ORIGINAL_COMMAND, the file on stdin), a client
//! folder as setup leaves it, and a snapshot of every file under a folder
//! to prove that a refusal changed nothing.
#![allow(dead_code)]

use std::collections::BTreeMap;
use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};

pub const WALWARDEN: &str = env!("CARGO_BIN_EXE_walwarden");
pub const SEG: u32 = 16 << 20;

/// A backup root with one client folder (base/ and wal/), as setup makes it.
pub struct Root {
    pub tmp: tempfile::TempDir,
    pub root: PathBuf,
    pub client: String,
    /// Config passed with --config (empty unless a test writes one).
    pub config: PathBuf,
}

impl Root {
    pub fn new(client: &str) -> Root {
        let tmp = tempfile::Builder::new()
            .prefix("walwarden-receive-")
            .tempdir()
            .unwrap();
        let root = tmp.path().join("backups");
        for dir in ["base", "wal"] {
            fs::create_dir_all(root.join(client).join(dir)).unwrap();
        }
        let config = tmp.path().join("config.toml");
        fs::write(&config, "").unwrap();
        Root {
            tmp,
            root,
            client: client.to_owned(),
            config,
        }
    }

    pub fn client_dir(&self) -> PathBuf {
        self.root.join(&self.client)
    }

    pub fn wal(&self) -> PathBuf {
        self.client_dir().join("wal")
    }

    pub fn base(&self) -> PathBuf {
        self.client_dir().join("base")
    }

    /// The receiver as sshd runs it for this client's key.
    pub fn command(&self, original: Option<&str>) -> Command {
        let mut command = Command::new(WALWARDEN);
        command
            .args(["receive", "--root"])
            .arg(&self.root)
            .args(["--client", &self.client, "--config"])
            .arg(&self.config)
            .env("HOME", self.tmp.path())
            .env_remove("WALWARDEN_ROOT")
            .env_remove("WALWARDEN_CONFIG")
            .env("RUST_BACKTRACE", "0");
        match original {
            Some(text) => command.env("SSH_ORIGINAL_COMMAND", text),
            None => command.env_remove("SSH_ORIGINAL_COMMAND"),
        };
        command
    }

    /// Runs one command with `input` on stdin.
    pub fn send(&self, original: Option<&str>, input: &[u8]) -> Output {
        let mut child = self
            .command(original)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let mut stdin = child.stdin.take().unwrap();
        let input = input.to_vec();
        // The receiver may refuse before reading everything: a broken pipe is its answer.
        let writer = std::thread::spawn(move || {
            let _ = stdin.write_all(&input);
        });
        let output = child.wait_with_output().unwrap();
        let _ = writer.join();
        output
    }

    pub fn put_wal(&self, name: &str, input: &[u8]) -> Output {
        self.send(Some(&format!("put-wal {name}")), input)
    }

    /// Starts an upload and returns the running receiver (stdin open).
    pub fn start(&self, original: &str) -> Child {
        self.command(Some(original))
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap()
    }

    pub fn refusals(&self) -> Vec<walwarden::ops::receive::Refusal> {
        walwarden::ops::receive::refusals(&self.client_dir())
    }
}

pub fn text(output: &Output) -> String {
    format!(
        "status {}\n--- stdout ---\n{}\n--- stderr ---\n{}",
        output.status,
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    )
}

pub fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

/// Asserts a refusal: exit 1, one stderr line naming `code`, nothing on stdout.
pub fn assert_refused(output: &Output, code: &str) {
    let err = stderr(output);
    assert_eq!(output.status.code(), Some(1), "{}", text(output));
    assert_eq!(err.lines().count(), 1, "one line: {}", text(output));
    assert!(
        err.starts_with("walwarden receive: refused")
            && err.trim_end().ends_with(&format!("[{code}]")),
        "{}",
        text(output)
    );
    assert!(output.stdout.is_empty(), "{}", text(output));
}

pub fn assert_accepted(output: &Output) {
    assert_eq!(output.status.code(), Some(0), "{}", text(output));
    assert!(output.stderr.is_empty(), "{}", text(output));
}

/// Every file and folder under `dir` with its content (folders: empty),
/// leaving out the receiver's log, which a refusal adds a line to.
pub fn snapshot(dir: &Path) -> BTreeMap<PathBuf, Vec<u8>> {
    let mut found = BTreeMap::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(path) = stack.pop() {
        let Ok(meta) = fs::symlink_metadata(&path) else {
            continue;
        };
        let relative = path.strip_prefix(dir).unwrap().to_path_buf();
        if relative.ends_with("receive.log") {
            continue;
        }
        if meta.is_dir() {
            for entry in fs::read_dir(&path).unwrap() {
                stack.push(entry.unwrap().path());
            }
            found.insert(relative, Vec::new());
        } else {
            found.insert(relative, fs::read(&path).unwrap_or_default());
        }
    }
    found
}

pub fn names(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
}

pub fn gzip_level(data: &[u8], level: u32) -> Vec<u8> {
    let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::new(level));
    encoder.write_all(data).unwrap();
    encoder.finish().unwrap()
}
