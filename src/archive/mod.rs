//! The model of what is on the backup server's disk, read and never written:
//! WAL file names and page headers (`wal`), what base tarballs and their
//! manifest say (`base_backup`, `manifest`), the catalog of clients scanned
//! from a root (`catalog`) with its cache of expensive facts (`base_cache`),
//! the restore's line of timelines and its gaps (`continuity`), a segment's
//! records walked for its end and last transaction (`records`), and file
//! events turned into catalog changes (`watch`), and the receiver's log of
//! refused uploads (`receiver_log`). The bottom layer: nothing
//! here knows about checks, operations or PostgreSQL servers.

pub mod base_backup;
pub mod base_cache;
pub mod catalog;
pub mod continuity;
pub mod folder;
pub mod manifest;
pub mod receiver_log;
pub mod records;
pub mod wal;
pub mod watch;
