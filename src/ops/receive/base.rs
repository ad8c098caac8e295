//! Base backups (`put-base ID FILE`, `finish-base ID`) and the copy test.
//!
//! A new base backup is staged beside the current one, in
//! `.walwarden/staging/ID/`, one file per `put-base` (each gzip stream read
//! to its end on arrival, the manifest's own checksum checked). `finish-base
//! ID` then verifies the whole of it with the checks' own reader (both
//! tarballs to their end, every file against backup_manifest when there is
//! one, pg_control's system identifier against the client's) and only then
//! makes it current in one rename: `renameat2(RENAME_EXCHANGE)` swaps the
//! staged folder with `base/`, so `base/` always holds a complete backup.
//! The previous base backup moves to `.walwarden/previous/TIME-ID/` and is
//! kept: the receiver never deletes a verified backup (pruning is the
//! operator's, as root), so a compromised client cannot push its own
//! restore points out by uploading new ones. A staged backup that does not
//! verify is removed; the current one is untouched.
//!
//! A `put-base` of the ID that is already current compares with `base/`
//! and a second `finish-base` of it answers 0, so a retried upload script
//! is harmless.

use std::fs;
use std::io::Read;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::time::SystemTime;

use nix::errno::Errno;
use nix::fcntl::{Flock, FlockArg, OFlag, RenameFlags, openat, renameat2};
use nix::sys::stat::Mode;
use nix::unistd::{AccessFlags, UnlinkatFlags, faccessat, unlinkat};

use crate::archive::base_backup::read_pg_wal_first_header;
use crate::archive::manifest::BackupManifest;
use crate::checks::integrity::check_base_backup;
use crate::ops::receive::error::ReceiveError;
use crate::ops::receive::grammar::{BaseFile, BaseId};
use crate::ops::receive::intake::{self, COPY_TEST_CAP, Expect, MANIFEST_CAP, Received};
use crate::ops::receive::land::{self, Landed};
use crate::ops::receive::put_wal::{compare, space_rule};
use crate::ops::receive::state::{
    ClientFolder, ClusterFacts, OWN_DIR, errno_io, open_dir, open_or_make_dir,
};
use crate::ops::receive::{Done, Outcome, Receiver};

const STAGING: &str = "staging";
const PREVIOUS: &str = "previous";
/// Reasons a failed base backup lists before "and N more".
const REASONS_SHOWN: usize = 5;

fn expect_for(file: BaseFile) -> (Expect, bool) {
    match file {
        BaseFile::BaseTar | BaseFile::PgWalTar => (Expect::Tarball, true),
        BaseFile::Manifest => (Expect::Small { cap: MANIFEST_CAP }, false),
    }
}

fn judge(file: BaseFile, received: &Received) -> Result<(), ReceiveError> {
    if file == BaseFile::Manifest {
        BackupManifest::parse(&received.kept).map_err(|e| ReceiveError::corrupt(e.to_string()))?;
    }
    Ok(())
}

/// A lock on one staged ID: shared while files arrive, exclusive to finish.
fn lock_id(
    staging: BorrowedFd<'_>,
    id: &BaseId,
    arg: FlockArg,
) -> Result<Flock<fs::File>, ReceiveError> {
    let name = format!("{}.lock", id.as_str());
    let fd = openat(
        staging,
        name.as_str(),
        OFlag::O_RDWR | OFlag::O_CREAT | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC,
        Mode::S_IRUSR | Mode::S_IWUSR,
    )
    .map_err(|e| ReceiveError::io(format!("{OWN_DIR}/{STAGING}/{name}"))(errno_io(e)))?;
    Flock::lock(fs::File::from(fd), arg).map_err(|(_, e)| match e {
        Errno::EWOULDBLOCK => ReceiveError::Busy {
            what: format!("base backup {}", id.as_str()),
        },
        e => ReceiveError::io(format!("locking {name}"))(errno_io(e)),
    })
}

pub fn put_base(
    folder: &ClientFolder,
    receiver: &Receiver,
    id: &BaseId,
    file: BaseFile,
    stdin: &mut dyn Read,
) -> Result<Done, ReceiveError> {
    let (expect, compressed) = expect_for(file);
    let state = folder.state();
    // The base backup of this ID is current already: a re-sent file is compared with it.
    if state.current_base.as_deref() == Some(id.as_str()) {
        let base = open_dir(folder.dir.as_fd(), "base")
            .map_err(|e| ReceiveError::io("opening base/")(errno_io(e)))?;
        let Some(stored) = land::open_existing(base.as_fd(), file.name())? else {
            return Err(ReceiveError::BadBase {
                id: id.as_str().to_owned(),
                reasons: format!(
                    "it is the current base backup already, without {}: upload a new base backup under a new ID",
                    file.name()
                ),
            });
        };
        return compare_upload(stored, file, stdin);
    }
    let own = folder.own()?;
    let staging = open_or_make_dir(own.as_fd(), STAGING)
        .map_err(|e| ReceiveError::io(format!("{OWN_DIR}/{STAGING}"))(errno_io(e)))?;
    let _id_lock = lock_id(staging.as_fd(), id, FlockArg::LockSharedNonblock)?;
    let dir = open_or_make_dir(staging.as_fd(), id.as_str()).map_err(|e| {
        ReceiveError::io(format!("{OWN_DIR}/{STAGING}/{}", id.as_str()))(errno_io(e))
    })?;
    if let Some(stored) = land::open_existing(dir.as_fd(), file.name())? {
        return compare_upload(stored, file, stdin);
    }
    let mut part = land::claim_part(dir.as_fd(), file.name())?;
    let space = space_rule(folder, receiver)?;
    let received = intake::receive(
        stdin,
        Some(part.file()),
        compressed,
        expect,
        ClusterFacts::default(),
        space,
        false,
    )
    .and_then(|received| judge(file, &received).map(|()| received));
    let received = match received {
        Ok(received) => received,
        Err(error) => {
            land::discard(dir.as_fd(), part);
            return Err(error);
        }
    };
    let landed = land::land(dir.as_fd(), &mut part, file.name());
    match landed {
        Ok(Landed::Placed) => Ok(Done {
            outcome: Outcome::Accepted,
            bytes: Some(received.raw_bytes),
            say: Some(format!(
                "put-base {} {}: {} bytes received and staged; send the other files, then finish-base {}",
                id.as_str(),
                file.name(),
                received.raw_bytes,
                id.as_str()
            )),
            log: true,
        }),
        Ok(Landed::NameTaken) => {
            // Another upload of this file landed while this one ran: compare with it.
            let result = land::reopen(dir.as_fd(), &part.name).and_then(|mine| {
                let (sha, len) = land::content_digest(mine, compressed, u64::MAX - 1)
                    .map_err(ReceiveError::io(format!("reading {}", part.name)))?;
                let mine = Received {
                    content_bytes: len,
                    sha256: Some(sha),
                    ..received.clone()
                };
                compare(land::reopen(dir.as_fd(), file.name())?, file.name(), &mine)
            });
            land::discard(dir.as_fd(), part);
            result
        }
        Err(error) => {
            land::discard(dir.as_fd(), part);
            Err(error)
        }
    }
}

/// Reads an upload only to compare it with a stored base backup file.
fn compare_upload(
    stored: fs::File,
    file: BaseFile,
    stdin: &mut dyn Read,
) -> Result<Done, ReceiveError> {
    let (expect, compressed) = expect_for(file);
    let received = intake::receive(
        stdin,
        None,
        compressed,
        expect,
        ClusterFacts::default(),
        Default::default(),
        true,
    )?;
    judge(file, &received)?;
    compare(stored, file.name(), &received)
}

pub fn finish_base(
    folder: &ClientFolder,
    id: &BaseId,
    now: SystemTime,
) -> Result<Done, ReceiveError> {
    let own = folder.own()?;
    let staging = open_or_make_dir(own.as_fd(), STAGING)
        .map_err(|e| ReceiveError::io(format!("{OWN_DIR}/{STAGING}"))(errno_io(e)))?;
    // A retry after a lost exit status, when this ID was made current already:
    // answered before any lock file is made, so a retry changes nothing.
    let already = || -> Result<Done, ReceiveError> {
        if folder.state().current_base.as_deref() == Some(id.as_str()) {
            return Ok(Done {
                outcome: Outcome::Duplicate,
                bytes: None,
                say: Some(format!(
                    "finish-base {}: already the current base backup",
                    id.as_str()
                )),
                log: true,
            });
        }
        Err(ReceiveError::NoSuchBase {
            id: id.as_str().to_owned(),
        })
    };
    if !land::exists(staging.as_fd(), id.as_str()) {
        return already();
    }
    let id_lock = lock_id(staging.as_fd(), id, FlockArg::LockExclusiveNonblock)?;
    let staged = match open_dir(staging.as_fd(), id.as_str()) {
        Ok(staged) => staged,
        // Finished by another connection while this one waited for the lock.
        Err(Errno::ENOENT) => return already(),
        Err(e) => {
            return Err(ReceiveError::io(format!(
                "{OWN_DIR}/{STAGING}/{}",
                id.as_str()
            ))(errno_io(e)));
        }
    };
    // A file never sent keeps the staging: send it, then finish again.
    let missing: Vec<&str> = [BaseFile::BaseTar, BaseFile::PgWalTar]
        .into_iter()
        .map(BaseFile::name)
        .filter(|name| !land::exists(staged.as_fd(), name))
        .collect();
    if !missing.is_empty() {
        return Err(ReceiveError::BadBase {
            id: id.as_str().to_owned(),
            reasons: format!(
                "{} never arrived (send it with put-base {} FILE; the files already sent are kept)",
                missing.join(" and "),
                id.as_str()
            ),
        });
    }

    let staged_path = folder.own_path().join(STAGING).join(id.as_str());
    let check = check_base_backup(&staged_path, &mut |_| {});
    let mut reasons: Vec<String> = check
        .failures
        .iter()
        .chain(check.manifest_mismatches())
        .cloned()
        .collect();
    let pg_wal_first = read_pg_wal_first_header(&staged_path.join(BaseFile::PgWalTar.name()));
    match (&pg_wal_first, check.system_identifier) {
        (Ok((name, header)), Some(sysid)) if header.system_identifier != sysid => {
            reasons.push(format!(
                "pg_wal.tar.gz's {name} is from database system {}, global/pg_control says {sysid}",
                header.system_identifier
            ));
        }
        _ => {}
    }
    let remove_staged = || {
        let _ = fs::remove_dir_all(&staged_path);
    };
    let Some(sysid) = check.system_identifier.filter(|_| reasons.is_empty()) else {
        remove_staged();
        let more = reasons.len().saturating_sub(REASONS_SHOWN);
        let mut text = reasons
            .iter()
            .take(REASONS_SHOWN)
            .cloned()
            .collect::<Vec<_>>()
            .join("; ");
        if more > 0 {
            text.push_str(&format!("; and {more} more"));
        }
        return Err(ReceiveError::BadBase {
            id: id.as_str().to_owned(),
            reasons: text,
        });
    };

    // Verified: make it current, under the client's lock.
    let _client_lock = folder.lock()?;
    let facts = folder.facts();
    if let Some(expected) = facts.system_identifier.filter(|e| *e != sysid) {
        remove_staged();
        return Err(ReceiveError::ForeignBase {
            id: id.as_str().to_owned(),
            found: sysid,
            expected,
        });
    }
    let state = folder.state();
    let previous_name = format!(
        "{}-{}",
        compact_time(now),
        state.current_base.as_deref().unwrap_or("base")
    );
    let kept = swap_in(
        folder,
        own.as_fd(),
        staging.as_fd(),
        staged,
        id,
        &previous_name,
    )?;
    let learnt = ClusterFacts {
        system_identifier: Some(sysid),
        segment_size: pg_wal_first.ok().map(|(_, header)| header.seg_size),
    };
    folder.learn(learnt, &format!("base backup {}", id.as_str()))?;
    folder.update_state(|state| {
        state.current_base = Some(id.as_str().to_owned());
        state.current_base_since = Some(humantime::format_rfc3339_seconds(now).to_string());
    })?;
    // The ID's lock file goes with its staging; held until here, so nothing raced it.
    let _ = unlinkat(
        staging.as_fd(),
        format!("{}.lock", id.as_str()).as_str(),
        UnlinkatFlags::NoRemoveDir,
    );
    drop(id_lock);
    let manifest = match &check.manifest {
        Some(outcome) => format!("matched its backup_manifest ({})", outcome.found_in),
        None => "no backup_manifest to compare with".to_owned(),
    };
    let label = check.label.as_ref().map_or(String::new(), |l| {
        format!(", backup started at {} ({})", l.start_lsn, l.start_segment)
    });
    let previous = match &kept {
        Some(name) => format!("; the previous one is kept in {OWN_DIR}/{PREVIOUS}/{name}"),
        None => String::new(),
    };
    Ok(Done {
        outcome: Outcome::Accepted,
        bytes: Some(check.bytes),
        say: Some(format!(
            "finish-base {}: read to its end ({} bytes), {manifest}, database system {sysid}{label}; now the current base backup{previous}",
            id.as_str(),
            check.bytes
        )),
        log: true,
    })
}

/// `20261125T130000Z`: sorts as it reads.
fn compact_time(time: SystemTime) -> String {
    humantime::format_rfc3339_seconds(time)
        .to_string()
        .replace(['-', ':'], "")
}

/// Makes the staged folder `base/` in one rename; returns where the previous
/// base backup is kept (`None` when there was none, or an empty folder).
fn swap_in(
    folder: &ClientFolder,
    own: BorrowedFd<'_>,
    staging: BorrowedFd<'_>,
    staged: OwnedFd,
    id: &BaseId,
    previous_name: &str,
) -> Result<Option<String>, ReceiveError> {
    let client = folder.dir.as_fd();
    let io = |what: &str| ReceiveError::io(what.to_owned());
    drop(staged);
    // staging/ID becomes base/, never over one.
    let install_new = || {
        renameat2(
            staging,
            id.as_str(),
            client,
            "base",
            RenameFlags::RENAME_NOREPLACE,
        )
        .map_err(|e| io("moving the new base backup to base/")(errno_io(e)))
    };
    let has_base = land::exists(client, "base");
    if !has_base {
        install_new()?;
        land::sync_dir(client).map_err(io("syncing the client folder"))?;
        return Ok(None);
    }
    let previous = open_or_make_dir(own, PREVIOUS)
        .map_err(|e| io(&format!("{OWN_DIR}/{PREVIOUS}"))(errno_io(e)))?;
    match renameat2(
        staging,
        id.as_str(),
        client,
        "base",
        RenameFlags::RENAME_EXCHANGE,
    ) {
        Ok(()) => {
            land::sync_dir(client).map_err(io("syncing the client folder"))?;
            // staging/ID now holds the previous base backup.
            keep_previous(staging, id.as_str(), previous.as_fd(), previous_name)
        }
        // No RENAME_EXCHANGE on this file system: the previous base backup
        // moves aside first (kept whole), then the new one takes its name.
        Err(Errno::EINVAL | Errno::ENOSYS) => {
            renameat2(
                client,
                "base",
                previous.as_fd(),
                previous_name,
                RenameFlags::RENAME_NOREPLACE,
            )
            .map_err(|e| io("moving the previous base backup aside")(errno_io(e)))?;
            install_new()?;
            land::sync_dir(client).map_err(io("syncing the client folder"))?;
            land::sync_dir(previous.as_fd()).map_err(io("syncing previous/"))?;
            Ok(Some(previous_name.to_owned()))
        }
        Err(e) => Err(io("swapping the new base backup in")(errno_io(e))),
    }
}

fn keep_previous(
    staging: BorrowedFd<'_>,
    name: &str,
    previous: BorrowedFd<'_>,
    previous_name: &str,
) -> Result<Option<String>, ReceiveError> {
    // An empty base/ (as setup makes it) is nothing to keep.
    if unlinkat(staging, name, UnlinkatFlags::RemoveDir).is_ok() {
        return Ok(None);
    }
    renameat2(
        staging,
        name,
        previous,
        previous_name,
        RenameFlags::RENAME_NOREPLACE,
    )
    .map_err(|e| ReceiveError::io("keeping the previous base backup")(errno_io(e)))?;
    land::sync_dir(previous).map_err(ReceiveError::io("syncing previous/"))?;
    land::sync_dir(staging).map_err(ReceiveError::io("syncing staging/"))?;
    Ok(Some(previous_name.to_owned()))
}

/// `copy-test`: what the tutorial's copy check proves, through the receiver:
/// the sender's bytes written (part file, synced, renamed), read back,
/// compared and removed, in the client's own folder.
pub fn copy_test(
    folder: &ClientFolder,
    receiver: &Receiver,
    stdin: &mut dyn Read,
) -> Result<Done, ReceiveError> {
    let own = folder.own()?;
    let mut content = Vec::new();
    stdin
        .take(COPY_TEST_CAP + 1)
        .read_to_end(&mut content)
        .map_err(|e| ReceiveError::corrupt(format!("the upload stopped: {e}")))?;
    if content.len() as u64 > COPY_TEST_CAP {
        return Err(ReceiveError::corrupt(format!(
            "more than {COPY_TEST_CAP} bytes: a copy test is small"
        )));
    }
    // An empty stdin is fine: the test then writes a line of its own.
    if content.is_empty() {
        content = b"walwarden copy test\n".to_vec();
    }
    let name = format!("copy-test.{}", std::process::id());
    let mut part = land::claim_part(own.as_fd(), &name)?;
    std::io::Write::write_all(part.file(), &content)
        .map_err(ReceiveError::io(format!("writing {OWN_DIR}/{}", part.name)))?;
    match land::land(own.as_fd(), &mut part, &name) {
        Ok(Landed::Placed) => {}
        Ok(Landed::NameTaken) => {
            land::discard(own.as_fd(), part);
            return Err(ReceiveError::Busy { what: name });
        }
        Err(error) => {
            land::discard(own.as_fd(), part);
            return Err(error);
        }
    }
    drop(part);
    let mut back = Vec::new();
    let read = land::reopen(own.as_fd(), &name).and_then(|file| {
        file.take(COPY_TEST_CAP + 1)
            .read_to_end(&mut back)
            .map_err(ReceiveError::io(format!("reading {OWN_DIR}/{name} back")))
    });
    let _ = unlinkat(own.as_fd(), name.as_str(), UnlinkatFlags::NoRemoveDir);
    land::sync_dir(own.as_fd()).map_err(ReceiveError::io("syncing .walwarden/"))?;
    read?;
    if back != content {
        return Err(ReceiveError::corrupt(
            "the file read back differs from what was written: check the backup server's disk",
        ));
    }
    let writable = |dir: &str| match faccessat(
        folder.dir.as_fd(),
        dir,
        AccessFlags::W_OK | AccessFlags::X_OK,
        nix::fcntl::AtFlags::empty(),
    ) {
        Ok(()) => format!("{dir}/ writable"),
        Err(Errno::ENOENT) => format!("no {dir}/ yet"),
        Err(e) => format!("{dir}/ NOT writable ({e})"),
    };
    let quota = match receiver.quota {
        Some(limit) => {
            let used = crate::ops::receive::quota::UsageBook::new(&folder.path)
                .used()
                .map_err(ReceiveError::io("summing the client folder's size"))?;
            format!("; quota {} bytes, {used} used", limit)
        }
        None => String::new(),
    };
    Ok(Done {
        outcome: Outcome::Accepted,
        bytes: Some(content.len() as u64),
        say: Some(format!(
            "copy-test ok: {} bytes written, synced, renamed, read back and removed in {}; {}, {}{quota}",
            content.len(),
            folder.own_path().display(),
            writable("wal"),
            writable("base"),
        )),
        log: false,
    })
}
