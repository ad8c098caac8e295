//! The client folder as the receiver sees it, and the little it remembers.
//!
//! `ClientFolder` opens `ROOT/<client>` and the folders below it once, as
//! directory handles that never follow a symlink, so every later create,
//! rename and unlink happens relative to them and cannot land outside the
//! client's folder. The receiver's own files live in `ROOT/<client>/.walwarden/`
//! (mode 700): `state.json` (the client's system identifier and segment size,
//! learnt from its base backup or its first accepted segment, and the ID of
//! the current base backup), `receive.log`, `staging/`, `previous/` and the
//! quota's `usage.json`.

use std::fs::File;
use std::io::Read;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::path::{Path, PathBuf};

use nix::fcntl::{OFlag, openat};
use nix::sys::stat::{Mode, fstat, mkdirat};
use serde::{Deserialize, Serialize};

use crate::ops::receive::error::ReceiveError;

/// The receiver's folder inside each client folder.
pub use crate::archive::receiver_log::OWN_DIR;
pub const STATE_FILE: &str = "state.json";

/// What the receiver remembers about a client between uploads.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClientState {
    /// Decimal text: JSON numbers lose precision past 2^53.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub system_identifier: Option<String>,
    /// Where the system identifier was learnt (for the engineer reading the file).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub system_identifier_from: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub segment_size: Option<u32>,
    /// The upload ID of the base backup in base/, when the receiver put it there.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub current_base: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub current_base_since: Option<String>,
}

impl ClientState {
    pub fn system_identifier(&self) -> Option<u64> {
        self.system_identifier.as_deref()?.parse().ok()
    }
}

/// What an upload is judged against.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ClusterFacts {
    pub system_identifier: Option<u64>,
    pub segment_size: Option<u32>,
}

/// Open handles on a client's folders.
pub struct ClientFolder {
    pub path: PathBuf,
    pub dir: OwnedFd,
}

fn dir_flags() -> OFlag {
    OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC
}

/// Opens `name` under `parent` as a directory, refusing a symlink.
pub fn open_dir(parent: BorrowedFd<'_>, name: &str) -> nix::Result<OwnedFd> {
    openat(parent, name, dir_flags(), Mode::empty())
}

/// Opens (making it, mode 700, when missing) the folder `name` under `parent`.
pub fn open_or_make_dir(parent: BorrowedFd<'_>, name: &str) -> nix::Result<OwnedFd> {
    match mkdirat(parent, name, Mode::S_IRWXU) {
        Ok(()) | Err(nix::errno::Errno::EEXIST) => open_dir(parent, name),
        Err(e) => Err(e),
    }
}

pub fn errno_io(error: nix::errno::Errno) -> std::io::Error {
    std::io::Error::from(error)
}

impl ClientFolder {
    /// Opens `root/client`, which setup made; the receiver never makes a
    /// client folder, so a typo in the forced command cannot start a new one.
    pub fn open(root: &Path, client: &str) -> Result<ClientFolder, ReceiveError> {
        let valid = !client.is_empty()
            && client.len() <= 64
            && !client.starts_with('.')
            && client
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b));
        if !valid {
            return Err(ReceiveError::Misconfigured(format!(
                "the forced command names client {client:?}, which is not a client name"
            )));
        }
        let path = root.join(client);
        let dir = nix::fcntl::open(&path, dir_flags(), Mode::empty()).map_err(|e| {
            ReceiveError::Misconfigured(format!(
                "client folder {} cannot be opened ({e}): run `walwarden setup {client}` on the backup server",
                path.display()
            ))
        })?;
        // A key whose user does not own the folder is on the wrong client:
        // say so, instead of a permission error on the first write.
        let euid = nix::unistd::geteuid();
        let owner = fstat(&dir)
            .map_err(|e| ReceiveError::io(client.to_owned())(errno_io(e)))?
            .st_uid;
        if !euid.is_root() && owner != euid.as_raw() {
            return Err(ReceiveError::Misconfigured(format!(
                "{} belongs to uid {owner}, not to this key's user (uid {euid}): the forced command names another client",
                path.display()
            )));
        }
        Ok(ClientFolder { path, dir })
    }

    /// `wal/`, which setup made.
    pub fn wal(&self) -> Result<OwnedFd, ReceiveError> {
        open_dir(self.dir.as_fd(), "wal").map_err(|e| {
            ReceiveError::Misconfigured(format!(
                "{}/wal cannot be opened ({e}): run `walwarden setup` for this client",
                self.path.display()
            ))
        })
    }

    /// `.walwarden/`, made on first use.
    pub fn own(&self) -> Result<OwnedFd, ReceiveError> {
        open_or_make_dir(self.dir.as_fd(), OWN_DIR)
            .map_err(|e| ReceiveError::io(OWN_DIR)(errno_io(e)))
    }

    pub fn own_path(&self) -> PathBuf {
        self.path.join(OWN_DIR)
    }

    pub fn state_path(&self) -> PathBuf {
        self.own_path().join(STATE_FILE)
    }

    /// The remembered state; missing or unreadable is an empty state (it is
    /// learnt again from the base backup or the next segment).
    pub fn state(&self) -> ClientState {
        crate::store::read_json_or_default(Some(&self.state_path()))
    }

    /// Changes the state under its lock, atomically on disk.
    pub fn update_state(&self, change: impl FnOnce(&mut ClientState)) -> Result<(), ReceiveError> {
        self.own()?;
        crate::store::update_json(&self.state_path(), change)
            .map_err(ReceiveError::io(format!("{OWN_DIR}/{STATE_FILE}")))
    }

    /// An exclusive lock on the client: held while the state, the current
    /// base backup or the log's rotation change.
    pub fn lock(&self) -> Result<crate::store::Lock, ReceiveError> {
        self.own()?;
        crate::store::Lock::acquire(&self.own_path().join("client"))
            .map_err(ReceiveError::io(format!("{OWN_DIR}/client.lock")))
    }

    /// The facts uploads are judged against: remembered, else from the
    /// current base backup's pg_wal.tar.gz (its first segment's header, a
    /// few KB), which is then remembered.
    pub fn facts(&self) -> ClusterFacts {
        let state = self.state();
        if let Some(sysid) = state.system_identifier() {
            return ClusterFacts {
                system_identifier: Some(sysid),
                segment_size: state.segment_size,
            };
        }
        let pg_wal = self.path.join("base").join("pg_wal.tar.gz");
        match crate::archive::base_backup::read_pg_wal_first_header(&pg_wal) {
            Ok((name, header)) => {
                let facts = ClusterFacts {
                    system_identifier: Some(header.system_identifier),
                    segment_size: Some(header.seg_size),
                };
                // Remembering is an optimisation: the next upload reads the tarball again.
                let _ = self.learn(facts, &format!("base/pg_wal.tar.gz ({name})"));
                facts
            }
            Err(_) => ClusterFacts::default(),
        }
    }

    /// Remembers the facts when none are known yet; returns the facts that
    /// hold afterwards (another upload may have been first).
    pub fn learn(&self, facts: ClusterFacts, from: &str) -> Result<ClusterFacts, ReceiveError> {
        let mut held = ClusterFacts::default();
        self.update_state(|state| {
            if state.system_identifier().is_none()
                && let Some(sysid) = facts.system_identifier
            {
                state.system_identifier = Some(sysid.to_string());
                state.system_identifier_from = Some(from.to_owned());
                state.segment_size = facts.segment_size;
            }
            held = ClusterFacts {
                system_identifier: state.system_identifier(),
                segment_size: state.segment_size,
            };
        })?;
        Ok(held)
    }
}

/// Reads at most `limit` bytes of a small file of ours.
pub fn read_small(path: &Path, limit: u64) -> std::io::Result<Vec<u8>> {
    let mut bytes = Vec::new();
    File::open(path)?.take(limit).read_to_end(&mut bytes)?;
    Ok(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_state_keeps_large_identifiers_exact() {
        let state = ClientState {
            system_identifier: Some(u64::MAX.to_string()),
            segment_size: Some(16 << 20),
            ..ClientState::default()
        };
        let json = serde_json::to_string(&state).unwrap();
        let back: ClientState = serde_json::from_str(&json).unwrap();
        assert_eq!(back.system_identifier(), Some(u64::MAX));
        let empty: ClientState = serde_json::from_str("{}").unwrap();
        assert_eq!(empty.system_identifier(), None);
    }

    #[test]
    fn a_client_folder_is_opened_never_made_and_learns_once() {
        let root = tempfile::tempdir().unwrap();
        assert!(ClientFolder::open(root.path(), "shop").is_err());
        assert!(ClientFolder::open(root.path(), "../x").is_err());
        std::fs::create_dir_all(root.path().join("shop/wal")).unwrap();
        let folder = ClientFolder::open(root.path(), "shop").unwrap();
        assert!(folder.wal().is_ok());
        assert_eq!(folder.facts(), ClusterFacts::default());
        let first = ClusterFacts {
            system_identifier: Some(7),
            segment_size: Some(16 << 20),
        };
        assert_eq!(folder.learn(first, "segment A").unwrap(), first);
        let other = ClusterFacts {
            system_identifier: Some(8),
            segment_size: Some(16 << 20),
        };
        // The first one learnt stays.
        assert_eq!(folder.learn(other, "segment B").unwrap(), first);
        assert_eq!(folder.facts(), first);
        assert_eq!(
            folder.state().system_identifier_from.as_deref(),
            Some("segment A")
        );
    }
}
