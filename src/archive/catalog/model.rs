//! The catalog's model: every client of a backup root with what its folder
//! holds and what that means (continuity, cadence). Built by `scan`, kept up
//! to date by `live`; pure, so the dashboard's update can change it without
//! touching the disk.

use std::path::{Path, PathBuf};
use std::time::SystemTime;

use crate::archive::continuity::{self, Continuity};
use crate::archive::folder::{self, BaseBackup, FileFact, Unreadable, WalArchive};
use crate::archive::watch::{Arrival, CADENCE_MEMORY, Cadence};

#[derive(Debug, Clone)]
pub struct Client {
    pub name: String,
    pub path: PathBuf,
    pub base: BaseBackup,
    pub wal: WalArchive,
    /// Files in the client folder itself that are neither base/ nor wal/.
    pub stray: Vec<FileFact>,
    pub unreadable: Vec<Unreadable>,
    /// Uploads the receiver (`walwarden receive`) refused, from its log.
    pub refusals: Vec<crate::archive::receiver_log::Refusal>,
    /// Timelines, gaps and the recoverable window, derived from the above.
    pub continuity: Continuity,
    /// Recent arrivals: seeded from mtimes at a scan, then fed by file events.
    pub cadence: Cadence,
    /// Set when live changes made `continuity` out of date; `Catalog::refresh` clears it.
    pub stale: bool,
}

#[derive(Debug, Clone)]
pub struct Catalog {
    pub root: PathBuf,
    pub clients: Vec<Client>,
    pub scanned_at: SystemTime,
}

impl Client {
    /// A client from what its folder holds: continuity derived, the cadence
    /// seeded from the newest segments' mtimes.
    pub fn from_folder(
        name: &str,
        path: &Path,
        base: BaseBackup,
        wal: WalArchive,
        stray: Vec<FileFact>,
        unreadable: Vec<Unreadable>,
    ) -> Client {
        let continuity = continuity::analyse(&base, &wal);
        let newest = wal
            .segments
            .iter()
            .rev()
            .filter(|s| !s.partial)
            .take(CADENCE_MEMORY);
        let cadence = Cadence::seeded(newest.map(|s| Arrival {
            name: s.file_name(),
            size: s.size,
            at: s.mtime,
            live: false,
        }));
        Client {
            name: name.to_owned(),
            path: path.to_owned(),
            base,
            wal,
            stray,
            unreadable,
            refusals: Vec::new(),
            continuity,
            cadence,
            stale: false,
        }
    }

    /// This client's `wal/` folder.
    pub fn wal_dir(&self) -> PathBuf {
        folder::wal_dir(&self.path)
    }

    /// This client's `base/` folder.
    pub fn base_dir(&self) -> PathBuf {
        folder::base_dir(&self.path)
    }
}

impl Catalog {
    pub fn client(&self, name: &str) -> Option<&Client> {
        self.clients.iter().find(|c| c.name == name)
    }

    /// Recomputes the derived facts of every client changed since the last refresh.
    pub fn refresh(&mut self) {
        for client in self.clients.iter_mut().filter(|c| c.stale) {
            client.continuity = continuity::analyse(&client.base, &client.wal);
            client.stale = false;
        }
    }

    /// Puts a re-read client in place (or adds a new one), keeping the arrivals seen live.
    pub fn replace_client(&mut self, mut client: Client) {
        match self.clients.iter_mut().find(|c| c.name == client.name) {
            Some(old) => {
                client.cadence.keep_live_from(&old.cadence);
                *old = client;
            }
            None => {
                let position = self.clients.partition_point(|c| c.name < client.name);
                self.clients.insert(position, client);
            }
        }
    }

    /// After a full rescan: every client keeps the arrivals `old` saw live
    /// (a rescan only knows mtimes).
    pub fn keep_live_arrivals_from(&mut self, old: &Catalog) {
        for client in &mut self.clients {
            if let Some(before) = old.client(&client.name) {
                client.cadence.keep_live_from(&before.cadence);
            }
        }
    }

    /// Drops a client whose folder disappeared.
    pub fn remove_client(&mut self, name: &str) {
        self.clients.retain(|c| c.name != name);
    }
}
