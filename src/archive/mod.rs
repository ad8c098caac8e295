//! The model of what is on the backup server's disk, read and never written:
//! WAL file names and page headers (`wal`), what base tarballs and their
//! manifest say (`base_backup`, `manifest`), the catalog of clients scanned
//! from a root (`catalog`) with its cache of expensive facts (`base_cache`),
//! the restore's line of timelines and its gaps (`continuity`), a segment's
//! records walked for its end and last transaction (`records`), file
//! events turned into catalog changes (`watch`), the receiver's log of
//! refused uploads (`receiver_log`), and the one way a file of the archive
//! is opened: regular files only, never blocking, every read bounded
//! (`safe_open`). The bottom layer: nothing here knows about checks,
//! operations or PostgreSQL servers.

pub mod base_backup;
pub mod base_cache;
pub mod catalog;
pub mod continuity;
pub mod folder;
pub mod manifest;
pub mod receiver_log;
pub mod records;
pub mod safe_open;
pub mod wal;
pub mod watch;
