//! The catalog: what is on the backup server, read from the file system.
//!
//! - `model`: the clients of a root and what their folders mean (pure);
//! - `scan`: reading a root or one client folder into the model;
//! - `live`: file events resolved into observations (the only I/O) and
//!   applied to the model without touching the disk.
//!
//! The items most callers need are re-exported here, so `catalog::scan`
//! and `catalog::Client` read as one module.

pub mod live;
pub mod model;
pub mod scan;

pub use live::{Applied, Observation, ObservedFile, Observer, spawn_observer};
pub use model::{Catalog, Client};
pub use scan::{CatalogError, ScanOptions, scan, scan_client};
