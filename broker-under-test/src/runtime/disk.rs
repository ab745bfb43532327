//! [`RealDisk`]: the seam's disk operations carried out on a real directory.

use std::collections::BTreeMap;
use std::fs::{self, File, OpenOptions};
use std::io;
use std::os::unix::fs::FileExt;
use std::path::{Component, Path, PathBuf};

use bytes::Bytes;

use crate::seam::{DirEntry, DiskError, DiskErrorKind, DiskExecutor, DiskOp, DiskReply};

/// Open file handles kept at most; past this the cache is emptied.
const MAX_OPEN_FILES: usize = 512;

/// Executes [`DiskOp`]s with `std::fs` under a root directory (the broker's
/// data directory). Paths in operations are relative to the root; absolute
/// paths and `..` are refused.
///
/// Open file handles are cached by path so that the write/sync traffic of a
/// log does not reopen its segment for every operation.
pub struct RealDisk {
    root: PathBuf,
    open: BTreeMap<PathBuf, File>,
}

impl RealDisk {
    /// A disk rooted at `root`, which should exist.
    pub fn new(root: impl Into<PathBuf>) -> RealDisk {
        RealDisk {
            root: root.into(),
            open: BTreeMap::new(),
        }
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    /// The real path of `path`, or an error if it is absolute or leaves the root.
    fn resolve(&self, path: &str) -> Result<PathBuf, DiskError> {
        let rel = Path::new(path);
        let mut out = self.root.clone();
        for component in rel.components() {
            match component {
                Component::Normal(part) => out.push(part),
                Component::CurDir => {}
                Component::ParentDir | Component::RootDir | Component::Prefix(_) => {
                    return Err(DiskError::new(
                        DiskErrorKind::Io,
                        format!("invalid path `{path}`: must be relative, without `..`"),
                    ))
                }
            }
        }
        Ok(out)
    }

    /// The cached handle of an existing file, opening it (read/write) if needed.
    fn file(&mut self, full: &Path) -> io::Result<&File> {
        if !self.open.contains_key(full) {
            let file = OpenOptions::new().read(true).write(true).open(full)?;
            self.cache(full.to_path_buf(), file);
        }
        Ok(&self.open[full])
    }

    fn cache(&mut self, full: PathBuf, file: File) {
        if self.open.len() >= MAX_OPEN_FILES {
            self.open.clear();
        }
        self.open.insert(full, file);
    }

    /// Forget cached handles for `full` and everything below it.
    fn forget(&mut self, full: &Path) {
        self.open.retain(|path, _| !path.starts_with(full));
    }

    fn run(&mut self, op: &DiskOp) -> io::Result<DiskReply> {
        // Paths were validated by `execute`; resolve cannot fail here.
        let full = |disk: &RealDisk, path: &str| disk.resolve(path).expect("validated path");
        match op {
            DiskOp::CreateDir { path } => {
                fs::create_dir_all(full(self, path))?;
                Ok(DiskReply::Done)
            }
            DiskOp::Create { path } => {
                let full = full(self, path);
                self.forget(&full);
                let file = OpenOptions::new()
                    .read(true)
                    .write(true)
                    .create(true)
                    .truncate(true)
                    .open(&full)?;
                self.cache(full, file);
                Ok(DiskReply::Done)
            }
            DiskOp::Write { path, offset, data } => {
                let full = full(self, path);
                self.file(&full)?.write_all_at(data, *offset)?;
                Ok(DiskReply::Done)
            }
            DiskOp::Read { path, offset, len } => {
                let full = full(self, path);
                let file = self.file(&full)?;
                let len = usize::try_from(*len).map_err(|_| io::Error::other("read too long"))?;
                let size = file.metadata()?.len();
                let want = len.min(size.saturating_sub(*offset) as usize);
                let mut buf = vec![0u8; want];
                let mut done = 0;
                while done < want {
                    match file.read_at(&mut buf[done..], offset + done as u64) {
                        Ok(0) => break,
                        Ok(n) => done += n,
                        Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                        Err(e) => return Err(e),
                    }
                }
                buf.truncate(done);
                Ok(DiskReply::Data(Bytes::from(buf)))
            }
            DiskOp::SyncFile { path } => {
                let full = full(self, path);
                self.file(&full)?.sync_all()?;
                Ok(DiskReply::Done)
            }
            DiskOp::SyncDir { path } => {
                File::open(full(self, path))?.sync_all()?;
                Ok(DiskReply::Done)
            }
            DiskOp::Truncate { path, len } => {
                let full = full(self, path);
                self.file(&full)?.set_len(*len)?;
                Ok(DiskReply::Done)
            }
            DiskOp::Rename { from, to } => {
                let (from, to) = (full(self, from), full(self, to));
                self.forget(&from);
                self.forget(&to);
                fs::rename(from, to)?;
                Ok(DiskReply::Done)
            }
            DiskOp::Remove { path } => {
                let full = full(self, path);
                self.forget(&full);
                if fs::symlink_metadata(&full)?.is_dir() {
                    fs::remove_dir(full)?;
                } else {
                    fs::remove_file(full)?;
                }
                Ok(DiskReply::Done)
            }
            DiskOp::RemoveDirAll { path } => {
                let full = full(self, path);
                self.forget(&full);
                fs::remove_dir_all(full)?;
                Ok(DiskReply::Done)
            }
            DiskOp::List { path } => {
                let mut entries = Vec::new();
                for entry in fs::read_dir(full(self, path))? {
                    let entry = entry?;
                    let meta = entry.metadata()?;
                    entries.push(DirEntry {
                        name: entry.file_name().to_string_lossy().into_owned(),
                        is_dir: meta.is_dir(),
                        size: if meta.is_dir() { 0 } else { meta.len() },
                    });
                }
                entries.sort_by(|a, b| a.name.cmp(&b.name));
                Ok(DiskReply::Listing(entries))
            }
        }
    }
}

/// The seam's error kind for an I/O error.
pub fn error_kind(err: &io::Error) -> DiskErrorKind {
    match err.kind() {
        io::ErrorKind::NotFound => DiskErrorKind::NotFound,
        io::ErrorKind::AlreadyExists => DiskErrorKind::AlreadyExists,
        io::ErrorKind::StorageFull => DiskErrorKind::NoSpace,
        _ if err.raw_os_error() == Some(28) => DiskErrorKind::NoSpace,
        _ => DiskErrorKind::Io,
    }
}

fn describe(op: &DiskOp) -> String {
    match op {
        DiskOp::CreateDir { path } => format!("create_dir {path}"),
        DiskOp::Create { path } => format!("create {path}"),
        DiskOp::Write { path, offset, data } => {
            format!("write {path} at {offset} ({} bytes)", data.len())
        }
        DiskOp::Read { path, offset, len } => format!("read {path} at {offset} ({len} bytes)"),
        DiskOp::SyncFile { path } => format!("sync_file {path}"),
        DiskOp::SyncDir { path } => format!("sync_dir {path}"),
        DiskOp::Truncate { path, len } => format!("truncate {path} to {len}"),
        DiskOp::Rename { from, to } => format!("rename {from} -> {to}"),
        DiskOp::Remove { path } => format!("remove {path}"),
        DiskOp::RemoveDirAll { path } => format!("remove_dir_all {path}"),
        DiskOp::List { path } => format!("list {path}"),
    }
}

impl DiskExecutor for RealDisk {
    fn execute(&mut self, op: &DiskOp) -> Result<DiskReply, DiskError> {
        self.resolve(op.path())?;
        if let DiskOp::Rename { to, .. } = op {
            self.resolve(to)?;
        }
        self.run(op)
            .map_err(|err| DiskError::new(error_kind(&err), format!("{}: {err}", describe(op))))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn op_ok(disk: &mut RealDisk, op: DiskOp) -> DiskReply {
        disk.execute(&op)
            .unwrap_or_else(|e| panic!("{op:?} failed: {e}"))
    }

    fn op_err(disk: &mut RealDisk, op: DiskOp) -> DiskErrorKind {
        match disk.execute(&op) {
            Ok(reply) => panic!("{op:?} succeeded with {reply:?}"),
            Err(e) => e.kind,
        }
    }

    fn path(p: &str) -> String {
        p.to_string()
    }

    #[test]
    fn write_read_truncate_sync() {
        let dir = tempfile::tempdir().unwrap();
        let mut disk = RealDisk::new(dir.path());
        op_ok(&mut disk, DiskOp::CreateDir { path: path("t-0") });
        op_ok(&mut disk, DiskOp::CreateDir { path: path("t-0") });
        op_ok(
            &mut disk,
            DiskOp::Create {
                path: path("t-0/a.log"),
            },
        );
        op_ok(
            &mut disk,
            DiskOp::Write {
                path: path("t-0/a.log"),
                offset: 0,
                data: Bytes::from_static(b"hello world"),
            },
        );
        op_ok(
            &mut disk,
            DiskOp::Write {
                path: path("t-0/a.log"),
                offset: 6,
                data: Bytes::from_static(b"there!"),
            },
        );
        op_ok(
            &mut disk,
            DiskOp::SyncFile {
                path: path("t-0/a.log"),
            },
        );
        op_ok(&mut disk, DiskOp::SyncDir { path: path("t-0") });
        op_ok(&mut disk, DiskOp::SyncDir { path: path("") });
        let read = |disk: &mut RealDisk, offset, len| match op_ok(
            disk,
            DiskOp::Read {
                path: path("t-0/a.log"),
                offset,
                len,
            },
        ) {
            DiskReply::Data(d) => d,
            other => panic!("{other:?}"),
        };
        assert_eq!(&read(&mut disk, 0, 100)[..], b"hello there!");
        assert_eq!(&read(&mut disk, 6, 3)[..], b"the");
        assert_eq!(&read(&mut disk, 50, 3)[..], b"");
        op_ok(
            &mut disk,
            DiskOp::Truncate {
                path: path("t-0/a.log"),
                len: 5,
            },
        );
        assert_eq!(&read(&mut disk, 0, 100)[..], b"hello");
        // Create truncates an existing file, also through the cached handle.
        op_ok(
            &mut disk,
            DiskOp::Create {
                path: path("t-0/a.log"),
            },
        );
        assert_eq!(&read(&mut disk, 0, 100)[..], b"");
        assert_eq!(std::fs::read(dir.path().join("t-0/a.log")).unwrap(), b"");
    }

    #[test]
    fn list_rename_remove() {
        let dir = tempfile::tempdir().unwrap();
        let mut disk = RealDisk::new(dir.path());
        op_ok(
            &mut disk,
            DiskOp::CreateDir {
                path: path("d/sub"),
            },
        );
        for name in ["d/b", "d/a", "d/c"] {
            op_ok(&mut disk, DiskOp::Create { path: path(name) });
        }
        op_ok(
            &mut disk,
            DiskOp::Write {
                path: path("d/c"),
                offset: 0,
                data: Bytes::from_static(b"xyz"),
            },
        );
        let listing = op_ok(&mut disk, DiskOp::List { path: path("d") });
        let entry = |name: &str, is_dir, size| DirEntry {
            name: name.to_string(),
            is_dir,
            size,
        };
        assert_eq!(
            listing,
            DiskReply::Listing(vec![
                entry("a", false, 0),
                entry("b", false, 0),
                entry("c", false, 3),
                entry("sub", true, 0),
            ])
        );
        op_ok(
            &mut disk,
            DiskOp::Rename {
                from: path("d/c"),
                to: path("d/a"),
            },
        );
        match op_ok(
            &mut disk,
            DiskOp::Read {
                path: path("d/a"),
                offset: 0,
                len: 10,
            },
        ) {
            DiskReply::Data(d) => assert_eq!(&d[..], b"xyz"),
            other => panic!("{other:?}"),
        }
        assert_eq!(
            op_err(&mut disk, DiskOp::SyncFile { path: path("d/c") }),
            DiskErrorKind::NotFound
        );
        op_ok(&mut disk, DiskOp::Remove { path: path("d/a") });
        op_ok(
            &mut disk,
            DiskOp::Remove {
                path: path("d/sub"),
            },
        );
        assert_eq!(
            op_err(&mut disk, DiskOp::Remove { path: path("d/a") }),
            DiskErrorKind::NotFound
        );
        op_ok(&mut disk, DiskOp::RemoveDirAll { path: path("d") });
        assert!(!dir.path().join("d").exists());
        assert_eq!(
            op_err(&mut disk, DiskOp::List { path: path("d") }),
            DiskErrorKind::NotFound
        );
    }

    #[test]
    fn errors() {
        let dir = tempfile::tempdir().unwrap();
        let mut disk = RealDisk::new(dir.path());
        // Writing requires the file to exist.
        assert_eq!(
            op_err(
                &mut disk,
                DiskOp::Write {
                    path: path("nope"),
                    offset: 0,
                    data: Bytes::from_static(b"x"),
                }
            ),
            DiskErrorKind::NotFound
        );
        for bad in ["/etc/passwd", "../x", "a/../../x"] {
            assert_eq!(
                op_err(&mut disk, DiskOp::Create { path: path(bad) }),
                DiskErrorKind::Io,
                "{bad}"
            );
        }
        assert_eq!(
            op_err(
                &mut disk,
                DiskOp::Rename {
                    from: path("x"),
                    to: path("../y"),
                }
            ),
            DiskErrorKind::Io
        );
        assert!(!dir.path().parent().unwrap().join("x").exists());
        let enospc = io::Error::from_raw_os_error(28);
        assert_eq!(error_kind(&enospc), DiskErrorKind::NoSpace);
        let eio = io::Error::from_raw_os_error(5);
        assert_eq!(error_kind(&eio), DiskErrorKind::Io);
    }
}
