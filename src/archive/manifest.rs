//! `backup_manifest`, which pg_basebackup writes beside the tarballs since
//! PostgreSQL 13: every file of the backup with its size and checksum, the
//! WAL range the backup needs, and a SHA-256 of the manifest itself.
//!
//! `BackupManifest::parse` verifies the manifest's own checksum before it
//! trusts a line of it. `ManifestCheck` is fed the files of base.tar.gz as
//! the one full pass over the tarball streams them (`base_backup.rs`), so a
//! manifest costs no second pass. The rules follow pg_verifybackup: files
//! that pg_basebackup itself adds or rewrites (`backup_manifest`, `pg_wal/`,
//! `postgresql.auto.conf`, `standby.signal`, `recovery.signal`) are not
//! compared, and tablespaces' files live in their own `<oid>.tar.gz`.

use std::collections::HashMap;

use serde::Deserialize;
use sha2::Digest;
use thiserror::Error;

use crate::archive::wal::Lsn;
use crate::display::escape_str;

#[derive(Debug, Error, PartialEq, Eq)]
pub enum ManifestError {
    #[error("backup_manifest is not valid JSON: {0}")]
    Json(String),
    #[error("backup_manifest has no Manifest-Checksum line")]
    NoChecksum,
    #[error(
        "backup_manifest's own checksum does not match (SHA-256 {actual}, the manifest says {expected}): the manifest was altered or damaged"
    )]
    ChecksumMismatch { expected: String, actual: String },
    #[error("backup_manifest version {0} is not supported (1 and 2 are)")]
    Version(u64),
    #[error("backup_manifest entry {path:?}: {reason}")]
    BadFile { path: String, reason: String },
    #[error("backup_manifest WAL range {index}: {reason}")]
    BadWalRange { index: usize, reason: String },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub enum ChecksumAlgorithm {
    None,
    Crc32c,
    Sha224,
    Sha256,
    Sha384,
    Sha512,
}

impl ChecksumAlgorithm {
    fn parse(name: &str) -> Option<ChecksumAlgorithm> {
        Some(match name {
            "NONE" => ChecksumAlgorithm::None,
            "CRC32C" => ChecksumAlgorithm::Crc32c,
            "SHA224" => ChecksumAlgorithm::Sha224,
            "SHA256" => ChecksumAlgorithm::Sha256,
            "SHA384" => ChecksumAlgorithm::Sha384,
            "SHA512" => ChecksumAlgorithm::Sha512,
            _ => return None,
        })
    }

    fn digest_len(self) -> usize {
        match self {
            ChecksumAlgorithm::None => 0,
            ChecksumAlgorithm::Crc32c => 4,
            ChecksumAlgorithm::Sha224 => 28,
            ChecksumAlgorithm::Sha256 => 32,
            ChecksumAlgorithm::Sha384 => 48,
            ChecksumAlgorithm::Sha512 => 64,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ManifestFile {
    pub path: String,
    pub size: u64,
    pub algorithm: ChecksumAlgorithm,
    pub checksum: Vec<u8>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub struct WalRange {
    pub timeline: u32,
    #[serde(serialize_with = "crate::serde_util::lsn")]
    pub start: Lsn,
    #[serde(serialize_with = "crate::serde_util::lsn")]
    pub end: Lsn,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BackupManifest {
    pub version: u64,
    pub system_identifier: Option<u64>,
    pub files: Vec<ManifestFile>,
    pub wal_ranges: Vec<WalRange>,
}

#[derive(Deserialize)]
struct RawManifest {
    #[serde(rename = "PostgreSQL-Backup-Manifest-Version")]
    version: u64,
    #[serde(rename = "System-Identifier")]
    system_identifier: Option<u64>,
    #[serde(rename = "Files", default)]
    files: Vec<RawFile>,
    #[serde(rename = "WAL-Ranges", default)]
    wal_ranges: Vec<RawWalRange>,
}

#[derive(Deserialize)]
struct RawFile {
    #[serde(rename = "Path")]
    path: Option<String>,
    #[serde(rename = "Encoded-Path")]
    encoded_path: Option<String>,
    #[serde(rename = "Size")]
    size: u64,
    #[serde(rename = "Checksum-Algorithm")]
    algorithm: Option<String>,
    #[serde(rename = "Checksum")]
    checksum: Option<String>,
}

#[derive(Deserialize)]
struct RawWalRange {
    #[serde(rename = "Timeline")]
    timeline: u32,
    #[serde(rename = "Start-LSN")]
    start: String,
    #[serde(rename = "End-LSN")]
    end: String,
}

fn hex_decode(text: &str) -> Option<Vec<u8>> {
    if !text.len().is_multiple_of(2) || !text.is_ascii() {
        return None;
    }
    (0..text.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(text.get(i..i + 2)?, 16).ok())
        .collect()
}

fn hex_encode(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

impl BackupManifest {
    /// Checks the manifest's SHA-256 (over everything up to and including the
    /// newline before its last line, as pg_verifybackup does), then parses it.
    pub fn parse(bytes: &[u8]) -> Result<BackupManifest, ManifestError> {
        verify_own_checksum(bytes)?;
        let raw: RawManifest =
            serde_json::from_slice(bytes).map_err(|e| ManifestError::Json(e.to_string()))?;
        if !(1..=2).contains(&raw.version) {
            return Err(ManifestError::Version(raw.version));
        }
        let files = raw
            .files
            .into_iter()
            .map(ManifestFile::from_raw)
            .collect::<Result<Vec<_>, _>>()?;
        let wal_ranges = raw
            .wal_ranges
            .iter()
            .enumerate()
            .map(|(index, r)| {
                let lsn = |text: &str| {
                    Lsn::parse(text).ok_or_else(|| ManifestError::BadWalRange {
                        index,
                        reason: format!("{text:?} is not an LSN"),
                    })
                };
                Ok(WalRange {
                    timeline: r.timeline,
                    start: lsn(&r.start)?,
                    end: lsn(&r.end)?,
                })
            })
            .collect::<Result<Vec<_>, _>>()?;
        Ok(BackupManifest {
            version: raw.version,
            system_identifier: raw.system_identifier,
            files,
            wal_ranges,
        })
    }
}

impl ManifestFile {
    fn from_raw(raw: RawFile) -> Result<ManifestFile, ManifestError> {
        let path = match (raw.path, raw.encoded_path) {
            (Some(path), _) => path,
            (None, Some(encoded)) => hex_decode(&encoded)
                .map(|b| String::from_utf8_lossy(&b).into_owned())
                .ok_or_else(|| ManifestError::BadFile {
                    path: encoded.clone(),
                    reason: "Encoded-Path is not hex".into(),
                })?,
            (None, None) => {
                return Err(ManifestError::BadFile {
                    path: String::new(),
                    reason: "neither Path nor Encoded-Path".into(),
                });
            }
        };
        let bad = |reason: String| ManifestError::BadFile {
            path: path.clone(),
            reason,
        };
        let algorithm = match raw.algorithm.as_deref() {
            None => ChecksumAlgorithm::None,
            Some(name) => ChecksumAlgorithm::parse(name)
                .ok_or_else(|| bad(format!("unknown Checksum-Algorithm {name:?}")))?,
        };
        let checksum = match (&raw.checksum, algorithm) {
            (_, ChecksumAlgorithm::None) => Vec::new(),
            (None, _) => return Err(bad("a Checksum-Algorithm but no Checksum".into())),
            (Some(text), _) => hex_decode(text)
                .filter(|b| b.len() == algorithm.digest_len())
                .ok_or_else(|| bad(format!("Checksum {text:?} is not a {algorithm:?} in hex")))?,
        };
        Ok(ManifestFile {
            path,
            size: raw.size,
            algorithm,
            checksum,
        })
    }
}

fn verify_own_checksum(bytes: &[u8]) -> Result<(), ManifestError> {
    let mut newlines = bytes
        .iter()
        .enumerate()
        .filter(|(_, b)| **b == b'\n')
        .map(|(i, _)| i);
    let (Some(_last), Some(penultimate)) = (newlines.next_back(), newlines.next_back()) else {
        return Err(ManifestError::NoChecksum);
    };
    let last_line = String::from_utf8_lossy(&bytes[penultimate + 1..]);
    let expected = last_line
        .split_once("\"Manifest-Checksum\"")
        .and_then(|(_, rest)| rest.split('"').nth(1))
        .map(str::to_ascii_lowercase)
        .ok_or(ManifestError::NoChecksum)?;
    let actual = hex_encode(&sha2::Sha256::digest(&bytes[..=penultimate]));
    if actual != expected {
        return Err(ManifestError::ChecksumMismatch { expected, actual });
    }
    Ok(())
}

/// Paths pg_basebackup adds or rewrites after the server listed them (or
/// never lists), as in pg_verifybackup's ignore list.
fn ignored(path: &str) -> bool {
    [
        "backup_manifest",
        "postgresql.auto.conf",
        "standby.signal",
        "recovery.signal",
    ]
    .contains(&path)
        || path == "pg_wal"
        || path.starts_with("pg_wal/")
}

/// A running checksum of one file's contents.
pub enum FileDigest {
    None,
    /// Not computed: the size is compared, the checksum is not.
    Skip,
    Crc32c(u32),
    Sha224(sha2::Sha224),
    Sha256(sha2::Sha256),
    Sha384(sha2::Sha384),
    Sha512(sha2::Sha512),
}

impl FileDigest {
    pub fn new(algorithm: ChecksumAlgorithm) -> FileDigest {
        match algorithm {
            ChecksumAlgorithm::None => FileDigest::None,
            ChecksumAlgorithm::Crc32c => FileDigest::Crc32c(0),
            ChecksumAlgorithm::Sha224 => FileDigest::Sha224(sha2::Sha224::new()),
            ChecksumAlgorithm::Sha256 => FileDigest::Sha256(sha2::Sha256::new()),
            ChecksumAlgorithm::Sha384 => FileDigest::Sha384(sha2::Sha384::new()),
            ChecksumAlgorithm::Sha512 => FileDigest::Sha512(sha2::Sha512::new()),
        }
    }

    pub fn update(&mut self, data: &[u8]) {
        match self {
            FileDigest::None | FileDigest::Skip => {}
            FileDigest::Crc32c(crc) => *crc = crc32c::crc32c_append(*crc, data),
            FileDigest::Sha224(h) => h.update(data),
            FileDigest::Sha256(h) => h.update(data),
            FileDigest::Sha384(h) => h.update(data),
            FileDigest::Sha512(h) => h.update(data),
        }
    }

    /// The digest as the manifest writes it: PostgreSQL stores the CRC-32C
    /// in the machine's byte order (little-endian on every platform it
    /// builds manifests on here), the SHA-2 digests as they come.
    pub fn finish(self) -> Vec<u8> {
        match self {
            FileDigest::None | FileDigest::Skip => Vec::new(),
            FileDigest::Crc32c(crc) => crc.to_le_bytes().to_vec(),
            FileDigest::Sha224(h) => h.finalize().to_vec(),
            FileDigest::Sha256(h) => h.finalize().to_vec(),
            FileDigest::Sha384(h) => h.finalize().to_vec(),
            FileDigest::Sha512(h) => h.finalize().to_vec(),
        }
    }
}

/// Compares the files of one tarball, as they stream past, with the manifest.
#[derive(Debug)]
pub struct ManifestCheck {
    files: Vec<ManifestFile>,
    index: HashMap<String, usize>,
    seen: Vec<bool>,
    /// One line per difference, naming the file.
    pub mismatches: Vec<String>,
}

impl ManifestCheck {
    /// Files under `pg_tblspc/` are left out: they live in the tablespaces'
    /// own `<oid>.tar.gz`, which this pass does not read.
    pub fn new(manifest: &BackupManifest) -> ManifestCheck {
        let files: Vec<ManifestFile> = manifest
            .files
            .iter()
            .filter(|f| !ignored(&f.path) && !f.path.starts_with("pg_tblspc/"))
            .cloned()
            .collect();
        // A path listed twice is said as such (pg_verifybackup refuses it as
        // a "duplicate path name"), not as a file missing from the tarball.
        let mut index = HashMap::new();
        let mut seen = vec![false; files.len()];
        let mut mismatches = Vec::new();
        let mut reported = std::collections::HashSet::new();
        for (i, file) in files.iter().enumerate() {
            if index.contains_key(&file.path) {
                seen[i] = true;
                if reported.insert(file.path.clone()) {
                    mismatches.push(format!(
                        "{} is listed more than once in backup_manifest (a duplicated path)",
                        escape_str(&file.path)
                    ));
                }
                continue;
            }
            index.insert(file.path.clone(), i);
        }
        ManifestCheck {
            seen,
            files,
            index,
            mismatches,
        }
    }

    /// A regular file of the tarball begins: the digest to feed its bytes
    /// into, or `None` when it is not compared.
    pub fn begin(&mut self, path: &str) -> Option<(usize, FileDigest)> {
        if ignored(path) || path.starts_with("pg_tblspc/") {
            return None;
        }
        match self.index.get(path) {
            Some(&i) => {
                self.seen[i] = true;
                Some((i, FileDigest::new(self.files[i].algorithm)))
            }
            None => {
                self.mismatches.push(format!(
                    "{} is in the tarball but not in backup_manifest",
                    escape_str(path)
                ));
                None
            }
        }
    }

    /// The file begun as `index` ended after `size` bytes with this digest.
    pub fn end(&mut self, index: usize, size: u64, digest: FileDigest) {
        let Some(file) = self.files.get(index) else {
            return;
        };
        if size != file.size {
            self.mismatches.push(format!(
                "{} has {size} bytes, backup_manifest says {}",
                escape_str(&file.path),
                file.size
            ));
            return;
        }
        if matches!(digest, FileDigest::Skip) {
            return;
        }
        let actual = digest.finish();
        if actual != file.checksum {
            self.mismatches.push(format!(
                "{}: {:?} checksum {} does not match backup_manifest's {}",
                escape_str(&file.path),
                file.algorithm,
                hex_encode(&actual),
                hex_encode(&file.checksum)
            ));
        }
    }

    /// Like [`ManifestCheck::end`] for a file whose CRC-32C was taken before
    /// the manifest was known: files listed with another algorithm get only
    /// their size compared.
    pub fn end_with_crc32c(&mut self, index: usize, size: u64, crc: u32) {
        let algorithm = self.files.get(index).map(|f| f.algorithm);
        let digest = match algorithm {
            Some(ChecksumAlgorithm::Crc32c) => FileDigest::Crc32c(crc),
            _ => FileDigest::Skip,
        };
        self.end(index, size, digest);
    }

    /// After the tarball's last entry: the files the manifest lists that never came.
    pub fn finish(mut self) -> Vec<String> {
        for (file, seen) in self.files.iter().zip(&self.seen) {
            if !seen {
                self.mismatches.push(format!(
                    "{} is in backup_manifest but not in the tarball",
                    escape_str(&file.path)
                ));
            }
        }
        self.mismatches
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A manifest as PostgreSQL 15 writes it, with its checksum computed here.
    fn manifest(body_files: &str) -> Vec<u8> {
        let head = format!(
            "{{ \"PostgreSQL-Backup-Manifest-Version\": 1,\n\"Files\": [\n{body_files}\n],\n\"WAL-Ranges\": [\n{{ \"Timeline\": 1, \"Start-LSN\": \"0/2000028\", \"End-LSN\": \"0/2000100\" }}\n],\n"
        );
        let sum = hex_encode(&sha2::Sha256::digest(head.as_bytes()));
        format!("{head}\"Manifest-Checksum\": \"{sum}\"}}\n").into_bytes()
    }

    const FILE: &str = "{ \"Path\": \"PG_VERSION\", \"Size\": 3, \"Last-Modified\": \"2026-11-25 13:03:00 GMT\", \"Checksum-Algorithm\": \"CRC32C\", \"Checksum\": \"2c8e1f7d\" }";

    #[test]
    fn parses_a_manifest_and_its_wal_range() {
        let parsed = BackupManifest::parse(&manifest(FILE)).unwrap();
        assert_eq!(parsed.version, 1);
        assert_eq!(parsed.files.len(), 1);
        assert_eq!(parsed.files[0].path, "PG_VERSION");
        assert_eq!(parsed.files[0].algorithm, ChecksumAlgorithm::Crc32c);
        assert_eq!(parsed.files[0].checksum, vec![0x2c, 0x8e, 0x1f, 0x7d]);
        assert_eq!(
            parsed.wal_ranges,
            vec![WalRange {
                timeline: 1,
                start: Lsn(0x2000028),
                end: Lsn(0x2000100)
            }]
        );
    }

    #[test]
    fn a_changed_byte_fails_the_manifest_checksum() {
        let mut bytes = manifest(FILE);
        let at = bytes.iter().position(|b| *b == b'3').unwrap();
        bytes[at] = b'4';
        assert!(matches!(
            BackupManifest::parse(&bytes),
            Err(ManifestError::ChecksumMismatch { .. })
        ));
    }

    #[test]
    fn encoded_paths_are_hex() {
        let file = FILE.replace(
            "\"Path\": \"PG_VERSION\"",
            "\"Encoded-Path\": \"50475f56455253494f4e\"",
        );
        let parsed = BackupManifest::parse(&manifest(&file)).unwrap();
        assert_eq!(parsed.files[0].path, "PG_VERSION");
    }

    #[test]
    fn streaming_check_finds_size_checksum_missing_and_extra_files() {
        let files = [
            FILE.to_owned(),
            FILE.replace("PG_VERSION", "global/1262")
                .replace("\"Size\": 3", "\"Size\": 4"),
            FILE.replace("PG_VERSION", "base/1/1259"),
            FILE.replace("PG_VERSION", "pg_wal/000000010000000000000002"),
        ]
        .join(",\n");
        let parsed = BackupManifest::parse(&manifest(&files)).unwrap();
        let mut check = ManifestCheck::new(&parsed);
        let crc = |data: &[u8]| {
            let mut d = FileDigest::new(ChecksumAlgorithm::Crc32c);
            d.update(data);
            d
        };
        // PG_VERSION: right size, its real CRC-32C differs from the made-up one.
        let (i, _) = check.begin("PG_VERSION").unwrap();
        check.end(i, 3, crc(b"15\n"));
        let (i, _) = check.begin("global/1262").unwrap();
        check.end(i, 3, crc(b"abc"));
        assert!(check.begin("global/pg_control").is_none());
        assert!(check.begin("pg_wal/000000010000000000000002").is_none());
        let found = check.finish();
        assert_eq!(found.len(), 4, "{found:#?}");
        assert!(found[0].starts_with("PG_VERSION: Crc32c checksum "));
        assert!(found[1].starts_with("global/1262 has 3 bytes"));
        assert!(found[2].starts_with("global/pg_control is in the tarball but not"));
        assert!(found[3].starts_with("base/1/1259 is in backup_manifest but not"));
    }

    #[test]
    fn a_duplicated_manifest_path_is_reported_as_such_not_as_missing() {
        let files = [FILE, FILE].join(",\n");
        let parsed = BackupManifest::parse(&manifest(&files)).unwrap();
        let mut check = ManifestCheck::new(&parsed);
        let (i, mut digest) = check.begin("PG_VERSION").unwrap();
        digest.update(b"15\n");
        check.end(i, 3, digest);
        let found = check.finish();
        assert!(
            found.iter().any(|m| m
                == "PG_VERSION is listed more than once in backup_manifest (a duplicated path)"),
            "{found:#?}"
        );
        assert!(
            !found.iter().any(|m| m.contains("not in the tarball")),
            "{found:#?}"
        );
    }

    #[test]
    fn crc32c_is_stored_little_endian() {
        // CRC-32C("123456789") = 0xE3069283 (the standard check value).
        let mut digest = FileDigest::new(ChecksumAlgorithm::Crc32c);
        digest.update(b"1234");
        digest.update(b"56789");
        assert_eq!(digest.finish(), vec![0x83, 0x92, 0x06, 0xE3]);
    }

    proptest::proptest! {
        #[test]
        fn parse_never_panics(bytes in proptest::collection::vec(proptest::num::u8::ANY, 0..512)) {
            let _ = BackupManifest::parse(&bytes);
        }

        #[test]
        fn parse_never_panics_on_mangled_manifests(at in 0usize..400, byte in proptest::num::u8::ANY) {
            let mut bytes = manifest(FILE);
            let at = at % bytes.len();
            bytes[at] = byte;
            let _ = BackupManifest::parse(&bytes);
        }
    }
}
