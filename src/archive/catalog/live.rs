//! The catalog kept live from file events, in two halves so the dashboard's
//! update stays pure:
//!
//! - `Observer` resolves each `WalChange` into an `Observation` off the UI
//!   thread: one `stat` of the file, the text of a `.backup` or `.history`
//!   file, and once per client the header of an arriving segment (its
//!   segment size, when no scan could read one yet);
//! - `Catalog::apply` files an observation into the model without any I/O;
//!   derived facts are recomputed by `Catalog::refresh`, once per batch.
//!
//! File events are hints: whatever an observation cannot settle (a link, a
//! folder, an unknown client, lost events) asks for a rescan instead.

use std::collections::HashSet;
use std::fs;
use std::path::{Path, PathBuf};
use std::time::SystemTime;

use super::model::Catalog;
use crate::archive::base_backup;
use crate::archive::folder::{self, FileFact};
use crate::archive::wal::{LongPageHeader, WalFileKind};
use crate::archive::watch::{Arrival, WalChange};

/// A file-system change, resolved into facts the catalog can apply.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Observation {
    /// A finished file (or a `.part`) in a client's wal/, as one stat saw it.
    Present {
        client: String,
        seen_at: SystemTime,
        file: ObservedFile,
    },
    /// A file left wal/.
    Removed { client: String, name: String },
    /// The file was gone by the time it was looked at (renamed on, removed):
    /// its own event follows.
    Vanished { client: String, name: String },
    /// Re-read this client folder (a link or folder in wal/, a change outside wal/).
    RescanClient(String),
    /// Re-read the whole root (events were lost).
    RescanAll(String),
}

/// A file in wal/ with what was read of it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ObservedFile {
    pub fact: FileFact,
    /// The text of a `.backup` or `.history` file (`Err`: why it could not be read).
    pub text: Option<Result<String, String>>,
    /// The long page header of a segment, when one was read.
    pub header: Option<Result<LongPageHeader, String>>,
}

/// What applying an observation did, and what the caller must do next.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Applied {
    Nothing,
    /// The client's files changed; `arrival` when a new segment landed.
    Changed {
        client: String,
        arrival: Option<Arrival>,
    },
    /// Re-read this client folder (`scan_client`), then `replace_client`.
    RescanClient(String),
    /// Re-read the whole root.
    RescanAll(String),
}

/// Turns file events into observations; does the I/O `Catalog::apply` must not.
#[derive(Debug)]
pub struct Observer {
    root: PathBuf,
    /// Clients whose segment header was read successfully: once is enough.
    headers_known: HashSet<String>,
}

impl Observer {
    pub fn new(root: &Path) -> Observer {
        Observer {
            root: root.to_owned(),
            headers_known: HashSet::new(),
        }
    }

    pub fn observe(&mut self, change: &WalChange) -> Observation {
        let (client, name, seen_at) = match change {
            WalChange::Resync {
                client: Some(client),
                ..
            }
            | WalChange::ClientChanged { client } => {
                return Observation::RescanClient(client.clone());
            }
            WalChange::Resync {
                client: None,
                reason,
            } => return Observation::RescanAll(reason.clone()),
            WalChange::Removed { client, name } => {
                return Observation::Removed {
                    client: client.clone(),
                    name: name.clone(),
                };
            }
            WalChange::Arrived {
                client,
                name,
                seen_at,
            }
            | WalChange::InFlight {
                client,
                name,
                seen_at,
            } => (client, name, *seen_at),
        };
        // Names are escaped as the catalog keeps them; the disk has the bytes.
        let path = folder::wal_dir(&self.root.join(crate::display::unescape_name(client)))
            .join(crate::display::unescape_name(name));
        let meta = match fs::symlink_metadata(&path) {
            Ok(meta) if meta.is_file() => meta,
            // A link, a folder, a fifo or a device: the scan's rules decide about those.
            Ok(_) => return Observation::RescanClient(client.clone()),
            Err(_) => {
                return Observation::Vanished {
                    client: client.clone(),
                    name: name.clone(),
                };
            }
        };
        let fact = FileFact {
            name: name.clone(),
            size: meta.len(),
            mtime: meta.modified().unwrap_or(seen_at),
        };
        let (text, header) = match WalFileKind::classify(name) {
            WalFileKind::BackupHistory { .. } | WalFileKind::TimelineHistory { .. } => {
                (Some(read_text(&path)), None)
            }
            WalFileKind::Segment { partial: false, .. }
                if fact.size > 0 && !self.headers_known.contains(client) =>
            {
                let header = base_backup::read_segment_header(&path).map_err(|e| e.to_string());
                if header.is_ok() {
                    self.headers_known.insert(client.clone());
                }
                (None, Some(header))
            }
            _ => (None, None),
        };
        Observation::Present {
            client: client.clone(),
            seen_at,
            file: ObservedFile { fact, text, header },
        }
    }

    /// Observes a batch, in order.
    pub fn observe_all(&mut self, changes: &[WalChange]) -> Vec<Observation> {
        changes.iter().map(|change| self.observe(change)).collect()
    }
}

/// Starts the observer thread: every change sent to the returned sender is
/// observed, in order, and handed to `deliver` with its observation; the
/// thread ends when the sender is dropped or `deliver` returns false.
pub fn spawn_observer(
    root: &Path,
    mut deliver: impl FnMut(WalChange, Observation) -> bool + Send + 'static,
) -> std::io::Result<std::sync::mpsc::Sender<WalChange>> {
    let (sender, changes) = std::sync::mpsc::channel::<WalChange>();
    let mut observer = Observer::new(root);
    std::thread::Builder::new()
        .name("walwarden-observer".into())
        .spawn(move || {
            for change in changes {
                let observation = observer.observe(&change);
                if !deliver(change, observation) {
                    break;
                }
            }
        })?;
    Ok(sender)
}

/// The text of a small file of the archive (`.backup`, `.history`).
pub(crate) fn read_text(path: &Path) -> Result<String, String> {
    base_backup::read_small_text(path).map_err(|e| e.to_string())
}

impl Catalog {
    /// Files one observation into the model incrementally. No I/O: the
    /// observer read what was needed. Derived facts are recomputed by
    /// `refresh`, once per batch.
    pub fn apply(&mut self, observation: &Observation) -> Applied {
        let (client_name, name) = match observation {
            Observation::RescanClient(client) => return Applied::RescanClient(client.clone()),
            Observation::RescanAll(reason) => return Applied::RescanAll(reason.clone()),
            Observation::Present { client, file, .. } => (client, &file.fact.name),
            Observation::Removed { client, name } | Observation::Vanished { client, name } => {
                (client, name)
            }
        };
        let Some(client) = self.clients.iter_mut().find(|c| &c.name == client_name) else {
            return Applied::RescanClient(client_name.clone());
        };
        let (seen_at, file) = match observation {
            Observation::Present { seen_at, file, .. } => (*seen_at, file),
            Observation::Removed { .. } => {
                if !client.wal.remove_file(name) {
                    return Applied::Nothing;
                }
                client.stale = true;
                return Applied::Changed {
                    client: client.name.clone(),
                    arrival: None,
                };
            }
            _ => return Applied::Nothing,
        };
        client.wal.present = true;
        // A rescan that ran between the file landing and this event listed it
        // already (its cadence entry is the mtime): the event is still its one
        // live arrival. A file already seen live is a repeated event.
        let scanned_only = client
            .cadence
            .arrivals()
            .any(|a| a.name == *name && !a.live);
        let arrival = client
            .wal
            .insert_live(file.fact.clone(), file.text.clone())
            .filter(|(s, replaced)| !s.partial && (!replaced || scanned_only))
            .map(|(segment, _)| Arrival {
                name: name.clone(),
                size: segment.size,
                at: seen_at,
                live: true,
            });
        if let Some(header) = &file.header {
            client.wal.learn_header(header.clone());
        }
        if let Some(arrival) = &arrival {
            client.cadence.record(arrival.clone());
        }
        client.stale = true;
        Applied::Changed {
            client: client.name.clone(),
            arrival,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::archive::catalog::Client;
    use crate::archive::folder::{BaseBackup, WalArchive};

    #[test]
    fn applying_an_observation_reads_nothing_from_disk() {
        let root = tempfile::tempdir().unwrap();
        let wal = folder::wal_dir(&root.path().join("acme"));
        fs::create_dir_all(&wal).unwrap();
        let segment = "000000010000000000000003.gz";
        fs::write(wal.join(segment), b"not read by apply").unwrap();
        fs::write(
            wal.join("00000002.history"),
            "1\t0/3000000\tno recovery target\n",
        )
        .unwrap();
        let at = SystemTime::UNIX_EPOCH + std::time::Duration::from_secs(1_800_000_000);
        let mut observer = Observer::new(root.path());
        let observed = observer.observe_all(&[
            WalChange::Arrived {
                client: "acme".into(),
                name: segment.into(),
                seen_at: at,
            },
            WalChange::Arrived {
                client: "acme".into(),
                name: "00000002.history".into(),
                seen_at: at,
            },
        ]);
        // Gone from disk: applying must not notice, it works on what was observed.
        fs::remove_dir_all(root.path()).unwrap();
        let client = Client::from_folder(
            "acme",
            &root.path().join("acme"),
            BaseBackup::default(),
            WalArchive {
                present: true,
                ..WalArchive::default()
            },
            Vec::new(),
            Vec::new(),
        );
        let mut catalog = Catalog {
            root: root.path().to_owned(),
            clients: vec![client],
            scanned_at: at,
        };
        let applied: Vec<Applied> = observed.iter().map(|o| catalog.apply(o)).collect();
        assert!(
            matches!(&applied[0], Applied::Changed { arrival: Some(a), .. } if a.name == segment),
            "{applied:?}"
        );
        let acme = &catalog.clients[0];
        assert_eq!(acme.wal.segments.len(), 1);
        let history = &acme.wal.histories[0];
        assert_eq!(history.entries.as_ref().map(Vec::len), Ok(1), "{history:?}");
    }
}
