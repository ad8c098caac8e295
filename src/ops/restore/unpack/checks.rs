//! The checks every entry passes before it is written (or, in the plan,
//! counted): a relative path without `..`, nothing below a symbolic link,
//! link targets inside the destination, no devices or fifos.

use std::collections::HashSet;
use std::path::{Component, Path, PathBuf};

use tar::EntryType;

use super::Refusal;
use super::stream::Header;

/// What a checked entry asks for, at `rel` (relative to `dest`, normalised).
pub(super) enum Action {
    File,
    Dir,
    /// The target as written in the tarball.
    Symlink(PathBuf),
    /// The target, relative to `dest`.
    HardLink(PathBuf),
}

pub(super) struct Checked {
    pub(super) rel: PathBuf,
    pub(super) action: Action,
}

/// The checks shared by [`scan_tarball`] and [`unpack`]. They remember the
/// symbolic links seen so far: nothing may be written below one.
#[derive(Default)]
pub(super) struct EntryChecks {
    pub(super) symlinks: HashSet<PathBuf>,
}

impl EntryChecks {
    /// `Ok(None)`: nothing to do (a pax global header, or `./` itself).
    pub(super) fn check(&mut self, header: &Header) -> Result<Option<Checked>, Refusal> {
        let kind = header.kind;
        if kind == EntryType::XGlobalHeader {
            return Ok(None);
        }
        let rel = relative_path(&header.path)?;
        if rel.as_os_str().is_empty() {
            // `./`: dest itself, whose mode and owner the caller decides.
            return match kind {
                EntryType::Directory => Ok(None),
                _ => Err(Refusal::Empty),
            };
        }
        self.refuse_below_symlink(&rel)?;
        let action = match kind {
            EntryType::Regular | EntryType::Continuous => Action::File,
            EntryType::Directory if self.symlinks.contains(&rel) => {
                return Err(Refusal::UnderSymlink {
                    parent: rel.to_string_lossy().into_owned(),
                });
            }
            EntryType::Directory => Action::Dir,
            EntryType::Symlink => {
                // Remembered even when refused, so what follows below it is
                // refused too.
                self.symlinks.insert(rel.clone());
                let target = header.link.as_deref().ok_or(Refusal::NoLinkTarget)?;
                check_symlink_target(&rel, target)?;
                Action::Symlink(target.to_owned())
            }
            EntryType::Link => {
                let target = header.link.as_deref().ok_or(Refusal::NoLinkTarget)?;
                let outside = || Refusal::LinkOutside {
                    target: target.to_string_lossy().into_owned(),
                };
                let target_rel = relative_path(target).map_err(|_| outside())?;
                if target_rel.as_os_str().is_empty() {
                    return Err(outside());
                }
                self.refuse_below_symlink(&target_rel)?;
                Action::HardLink(target_rel)
            }
            EntryType::Char => return Err(unsupported("character device")),
            EntryType::Block => return Err(unsupported("block device")),
            EntryType::Fifo => return Err(unsupported("fifo")),
            EntryType::GNUSparse => return Err(unsupported("sparse file")),
            _ => return Err(unsupported("unknown type")),
        };
        if !matches!(action, Action::Symlink(_)) {
            // A file or link replaces an earlier symbolic link of that name.
            self.symlinks.remove(&rel);
        }
        Ok(Some(Checked { rel, action }))
    }

    fn refuse_below_symlink(&self, rel: &Path) -> Result<(), Refusal> {
        if self.symlinks.is_empty() {
            return Ok(());
        }
        match rel.ancestors().skip(1).find(|a| self.symlinks.contains(*a)) {
            Some(parent) => Err(Refusal::UnderSymlink {
                parent: parent.to_string_lossy().into_owned(),
            }),
            None => Ok(()),
        }
    }
}

pub(super) fn unsupported(kind: &'static str) -> Refusal {
    Refusal::Unsupported { kind }
}

/// An entry's name relative to `dest`: `./` components dropped, absolute
/// paths and `..` refused.
pub(super) fn relative_path(path: &Path) -> Result<PathBuf, Refusal> {
    let mut rel = PathBuf::new();
    for component in path.components() {
        match component {
            Component::Normal(part) => rel.push(part),
            Component::CurDir => {}
            Component::ParentDir => return Err(Refusal::ParentDir),
            Component::RootDir | Component::Prefix(_) => return Err(Refusal::Absolute),
        }
    }
    Ok(rel)
}

/// A symbolic link at `rel` may point to `target` when the target is
/// relative, its `..` components all come first, and they do not climb above
/// `dest`. That form resolves the same whatever the links below it are
/// (`a/..` would depend on whether `a` is itself a link), and since nothing
/// is written below a link, the link's own directory is a real one.
pub(super) fn check_symlink_target(rel: &Path, target: &Path) -> Result<(), Refusal> {
    let outside = || Refusal::LinkOutside {
        target: target.to_string_lossy().into_owned(),
    };
    if target.as_os_str().is_empty() {
        return Err(outside());
    }
    let mut depth = rel.components().count().saturating_sub(1);
    let mut descended = false;
    for component in target.components() {
        match component {
            Component::Normal(_) => {
                depth += 1;
                descended = true;
            }
            Component::CurDir => {}
            Component::ParentDir if !descended && depth > 0 => depth -= 1,
            Component::ParentDir | Component::RootDir | Component::Prefix(_) => {
                return Err(outside());
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn header(path: &str, kind: EntryType, link: Option<&str>) -> Header {
        Header {
            path: PathBuf::from(path),
            kind,
            link: link.map(PathBuf::from),
        }
    }

    #[test]
    fn relative_paths_drop_dot_and_refuse_escapes() {
        let cases: &[(&str, Result<&str, Refusal>)] = &[
            ("base/1/1259", Ok("base/1/1259")),
            ("./pg_wal/archive_status/", Ok("pg_wal/archive_status")),
            ("./", Ok("")),
            ("a//b/./c", Ok("a/b/c")),
            ("../evil", Err(Refusal::ParentDir)),
            ("a/../../evil", Err(Refusal::ParentDir)),
            ("/abs/evil", Err(Refusal::Absolute)),
        ];
        for (input, want) in cases {
            let got = relative_path(Path::new(input));
            assert_eq!(got, want.clone().map(PathBuf::from), "{input}");
        }
    }

    #[test]
    fn symlink_targets_must_stay_inside() {
        let ok = [
            ("link", "target"),
            ("pg_wal/link", "../global/x"),
            ("a/b/link", "../../c"),
            ("a/link", ".."),
            ("link", "./a/b"),
        ];
        for (rel, target) in ok {
            assert_eq!(
                check_symlink_target(Path::new(rel), Path::new(target)),
                Ok(()),
                "{rel} -> {target}"
            );
        }
        let refused = [
            ("link", "/etc"),
            ("link", ".."),
            ("a/link", "../.."),
            ("link", "a/../.."),
            // `a/..` depends on whether `a` is a link: refused.
            ("link", "a/../b"),
            ("link", ""),
        ];
        for (rel, target) in refused {
            assert!(
                matches!(
                    check_symlink_target(Path::new(rel), Path::new(target)),
                    Err(Refusal::LinkOutside { .. })
                ),
                "{rel} -> {target}"
            );
        }
    }

    #[test]
    fn nothing_below_a_symlink_even_a_refused_one() {
        let mut checks = EntryChecks::default();
        let link = checks.check(&header("link", EntryType::Symlink, Some("/etc")));
        assert!(matches!(link, Err(Refusal::LinkOutside { .. })));
        let below = checks.check(&header("link/passwd", EntryType::Regular, None));
        assert_eq!(
            below.err(),
            Some(Refusal::UnderSymlink {
                parent: "link".into()
            })
        );
        let as_dir = checks.check(&header("link", EntryType::Directory, None));
        assert!(matches!(as_dir, Err(Refusal::UnderSymlink { .. })));
        // A file replacing the link clears it.
        assert!(
            checks
                .check(&header("link", EntryType::Regular, None))
                .is_ok()
        );
        assert!(
            checks
                .check(&header("link/x", EntryType::Regular, None))
                .is_ok()
        );
    }

    #[test]
    fn hard_links_stay_inside_and_specials_are_refused() {
        let mut checks = EntryChecks::default();
        let inside = checks.check(&header("b", EntryType::Link, Some("./a/file")));
        assert!(matches!(
            inside,
            Ok(Some(Checked { action: Action::HardLink(ref t), .. })) if t == Path::new("a/file")
        ));
        for target in ["/etc/shadow", "../x", ""] {
            let got = checks.check(&header("b", EntryType::Link, Some(target)));
            assert!(matches!(got, Err(Refusal::LinkOutside { .. })), "{target}");
        }
        for kind in [EntryType::Char, EntryType::Block, EntryType::Fifo] {
            assert!(matches!(
                checks.check(&header("dev", kind, None)),
                Err(Refusal::Unsupported { .. })
            ));
        }
        assert!(matches!(
            checks.check(&header("./", EntryType::Directory, None)),
            Ok(None)
        ));
        assert_eq!(
            checks.check(&header("./", EntryType::Regular, None)).err(),
            Some(Refusal::Empty)
        );
    }
}
