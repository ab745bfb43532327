//! An in-memory disk that executes every [`DiskOp`] synchronously, for unit
//! tests.
//!
//! It models the page cache and durability the way the seam describes them:
//! every file has a cached (current) content and a durable content, every
//! directory has cached and durable entries. Writes and truncates change the
//! cache; `SyncFile` makes a file's content durable; `SyncDir` makes a
//! directory's current entries (creations, renames, removals) durable.
//! [`MemDisk::crash`] keeps only what is durable.
//!
//! Files and directories are inodes; directory entries point at inodes, so a
//! rename or removal that was not made durable is undone by a crash.

use std::collections::BTreeMap;

use bytes::Bytes;

use crate::seam::{DirEntry, DiskError, DiskErrorKind, DiskExecutor, DiskOp, DiskReply};

type Inode = u64;

const ROOT: Inode = 0;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Entry {
    File(Inode),
    Dir(Inode),
}

#[derive(Debug, Clone, Default)]
struct FileData {
    cache: Vec<u8>,
    durable: Vec<u8>,
    /// `cache` and `durable` agree below this offset: a sync copies only
    /// from here on (copying the whole file made syncs quadratic).
    dirty_from: usize,
}

#[derive(Debug, Clone, Default)]
struct DirData {
    cached: BTreeMap<String, Entry>,
    durable: BTreeMap<String, Entry>,
}

/// The in-memory disk. See the module documentation.
#[derive(Debug, Clone)]
pub struct MemDisk {
    files: BTreeMap<Inode, FileData>,
    dirs: BTreeMap<Inode, DirData>,
    next_inode: Inode,
    capacity: Option<u64>,
    fail_syncs: bool,
    /// An entry was removed or replaced since the last [`MemDisk::collect`].
    maybe_garbage: bool,
}

impl Default for MemDisk {
    fn default() -> Self {
        MemDisk::new()
    }
}

fn components(path: &str) -> Vec<&str> {
    path.split('/')
        .filter(|c| !c.is_empty() && *c != ".")
        .collect()
}

fn not_found(path: &str) -> DiskError {
    DiskError::new(
        DiskErrorKind::NotFound,
        format!("no such file or directory: {path}"),
    )
}

impl MemDisk {
    /// An empty disk holding only the (durable) root directory.
    pub fn new() -> MemDisk {
        let mut dirs = BTreeMap::new();
        dirs.insert(ROOT, DirData::default());
        MemDisk {
            files: BTreeMap::new(),
            dirs,
            next_inode: ROOT + 1,
            capacity: None,
            fail_syncs: false,
            maybe_garbage: false,
        }
    }

    /// Drop files and directories no entry (cached or durable) refers to any more.
    fn collect(&mut self) {
        if !self.maybe_garbage {
            return;
        }
        self.maybe_garbage = false;
        let mut live_files = std::collections::BTreeSet::new();
        let mut live_dirs = std::collections::BTreeSet::new();
        let mut stack = vec![ROOT];
        while let Some(dir) = stack.pop() {
            if !live_dirs.insert(dir) {
                continue;
            }
            if let Some(d) = self.dirs.get(&dir) {
                for entry in d.cached.values().chain(d.durable.values()) {
                    match *entry {
                        Entry::File(ino) => {
                            live_files.insert(ino);
                        }
                        Entry::Dir(ino) => stack.push(ino),
                    }
                }
            }
        }
        self.files.retain(|ino, _| live_files.contains(ino));
        self.dirs.retain(|ino, _| live_dirs.contains(ino));
    }

    /// Limit the total size of all files' cached contents; a write that would
    /// grow past it fails with `NoSpace`. `None` removes the limit.
    pub fn set_capacity(&mut self, bytes: Option<u64>) {
        self.capacity = bytes;
    }

    /// While set, every `SyncFile` fails with `Io` (and makes nothing durable).
    pub fn fail_syncs(&mut self, fail: bool) {
        self.fail_syncs = fail;
    }

    /// Lose everything that was not made durable, as a power loss would.
    pub fn crash(&mut self) {
        let mut files = BTreeMap::new();
        let mut dirs = BTreeMap::new();
        let mut stack = vec![ROOT];
        while let Some(dir) = stack.pop() {
            let durable = self
                .dirs
                .get(&dir)
                .map(|d| d.durable.clone())
                .unwrap_or_default();
            for entry in durable.values() {
                match *entry {
                    Entry::File(ino) => {
                        let content = self
                            .files
                            .get(&ino)
                            .map(|f| f.durable.clone())
                            .unwrap_or_default();
                        files.insert(
                            ino,
                            FileData {
                                cache: content.clone(),
                                dirty_from: content.len(),
                                durable: content,
                            },
                        );
                    }
                    Entry::Dir(ino) => stack.push(ino),
                }
            }
            dirs.insert(
                dir,
                DirData {
                    cached: durable.clone(),
                    durable,
                },
            );
        }
        self.files = files;
        self.dirs = dirs;
    }

    /// Power loss with torn writes: before the crash, each file's unsynced
    /// tail (from the first 512-byte sector where cache and durable content
    /// differ) may have partly reached the platter. `keep(n)` is told how many
    /// sectors are unsynced and answers how many of them, from the start,
    /// survive. Then everything not durable is lost, as in [`MemDisk::crash`].
    pub fn crash_torn(&mut self, keep: &mut dyn FnMut(usize) -> usize) {
        const SECTOR: usize = 512;
        for file in self.files.values_mut() {
            let cache = &file.cache;
            let durable = &mut file.durable;
            let common = cache
                .iter()
                .zip(durable.iter())
                .take_while(|(a, b)| a == b)
                .count();
            if common == cache.len() && cache.len() == durable.len() {
                continue;
            }
            let first_sector = common / SECTOR;
            let start = first_sector * SECTOR;
            let unsynced = cache.len().saturating_sub(start).div_ceil(SECTOR);
            let kept = keep(unsynced).min(unsynced);
            if kept == 0 {
                continue;
            }
            let end = (start + kept * SECTOR).min(cache.len());
            if durable.len() < end {
                durable.resize(end, 0);
            }
            durable[start..end].copy_from_slice(&cache[start..end]);
        }
        self.crash();
    }

    /// Flip one bit of durable data (and its cached copy): silent corruption.
    /// `pick(n)` chooses an index below `n`. Returns the file and byte offset.
    pub fn flip_random_bit(&mut self, pick: &mut dyn FnMut(u64) -> u64) -> Option<(String, u64)> {
        let candidates: Vec<(String, Inode)> = self
            .paths()
            .into_iter()
            .filter(|(_, ino)| self.files.get(ino).is_some_and(|f| !f.durable.is_empty()))
            .collect();
        if candidates.is_empty() {
            return None;
        }
        let (path, ino) = candidates[pick(candidates.len() as u64) as usize].clone();
        let file = self.files.get_mut(&ino)?;
        let offset = pick(file.durable.len() as u64) as usize;
        let bit = 1u8 << pick(8);
        file.durable[offset] ^= bit;
        if offset < file.cache.len() {
            file.cache[offset] ^= bit;
        }
        Some((path, offset as u64))
    }

    /// Every file reachable through the current directory entries, by path.
    fn paths(&self) -> Vec<(String, Inode)> {
        let mut found = Vec::new();
        let mut stack = vec![(String::new(), ROOT)];
        while let Some((prefix, dir)) = stack.pop() {
            if let Some(d) = self.dirs.get(&dir) {
                for (name, entry) in &d.cached {
                    let path = if prefix.is_empty() {
                        name.clone()
                    } else {
                        format!("{prefix}/{name}")
                    };
                    match *entry {
                        Entry::File(ino) => found.push((path, ino)),
                        Entry::Dir(ino) => stack.push((path, ino)),
                    }
                }
            }
        }
        found.sort();
        found
    }

    /// The current (page-cache) content of a file.
    pub fn read_all(&self, path: &str) -> Option<Bytes> {
        match self.lookup(path) {
            Some(Entry::File(ino)) => self
                .files
                .get(&ino)
                .map(|f| Bytes::copy_from_slice(&f.cache)),
            _ => None,
        }
    }

    /// Every file currently visible, as sorted paths.
    pub fn files(&self) -> Vec<String> {
        let mut out = Vec::new();
        let mut stack = vec![(ROOT, String::new())];
        while let Some((dir, prefix)) = stack.pop() {
            if let Some(d) = self.dirs.get(&dir) {
                for (name, entry) in &d.cached {
                    let path = if prefix.is_empty() {
                        name.clone()
                    } else {
                        format!("{prefix}/{name}")
                    };
                    match *entry {
                        Entry::File(_) => out.push(path),
                        Entry::Dir(ino) => stack.push((ino, path)),
                    }
                }
            }
        }
        out.sort();
        out
    }

    fn lookup(&self, path: &str) -> Option<Entry> {
        let mut current = Entry::Dir(ROOT);
        for name in components(path) {
            match current {
                Entry::Dir(ino) => current = *self.dirs.get(&ino)?.cached.get(name)?,
                Entry::File(_) => return None,
            }
        }
        Some(current)
    }

    /// The directory inode holding `path`'s entry, and the entry's name.
    fn parent_of<'p>(&self, path: &'p str) -> Result<(Inode, &'p str), DiskError> {
        let parts = components(path);
        let Some((name, parents)) = parts.split_last() else {
            return Err(DiskError::new(
                DiskErrorKind::Io,
                "operation on the root directory",
            ));
        };
        let mut dir = ROOT;
        for part in parents {
            match self.dirs.get(&dir).and_then(|d| d.cached.get(*part)) {
                Some(Entry::Dir(ino)) => dir = *ino,
                _ => return Err(not_found(path)),
            }
        }
        Ok((dir, name))
    }

    fn file_ino(&self, path: &str) -> Result<Inode, DiskError> {
        match self.lookup(path) {
            Some(Entry::File(ino)) => Ok(ino),
            Some(Entry::Dir(_)) => Err(DiskError::new(
                DiskErrorKind::Io,
                format!("is a directory: {path}"),
            )),
            None => Err(not_found(path)),
        }
    }

    fn dir_ino(&self, path: &str) -> Result<Inode, DiskError> {
        match self.lookup(path) {
            Some(Entry::Dir(ino)) => Ok(ino),
            Some(Entry::File(_)) => Err(DiskError::new(
                DiskErrorKind::Io,
                format!("not a directory: {path}"),
            )),
            None => Err(not_found(path)),
        }
    }

    fn alloc(&mut self) -> Inode {
        let ino = self.next_inode;
        self.next_inode += 1;
        ino
    }

    /// Bytes held by all files' current contents.
    pub fn used_bytes(&self) -> u64 {
        self.files.values().map(|f| f.cache.len() as u64).sum()
    }

    fn dir_mut(&mut self, ino: Inode) -> &mut DirData {
        self.dirs.entry(ino).or_default()
    }

    fn create_dir(&mut self, path: &str) -> Result<DiskReply, DiskError> {
        let mut dir = ROOT;
        for part in components(path) {
            let existing = self
                .dirs
                .get(&dir)
                .and_then(|d| d.cached.get(part))
                .copied();
            dir = match existing {
                Some(Entry::Dir(ino)) => ino,
                Some(Entry::File(_)) => {
                    return Err(DiskError::new(
                        DiskErrorKind::AlreadyExists,
                        format!("a file is in the way: {path}"),
                    ))
                }
                None => {
                    let ino = self.alloc();
                    self.dirs.insert(ino, DirData::default());
                    self.dir_mut(dir)
                        .cached
                        .insert(part.to_string(), Entry::Dir(ino));
                    ino
                }
            };
        }
        Ok(DiskReply::Done)
    }

    fn create(&mut self, path: &str) -> Result<DiskReply, DiskError> {
        let (dir, name) = self.parent_of(path)?;
        match self
            .dirs
            .get(&dir)
            .and_then(|d| d.cached.get(name))
            .copied()
        {
            Some(Entry::File(ino)) => {
                if let Some(f) = self.files.get_mut(&ino) {
                    f.cache.clear();
                    f.dirty_from = 0;
                }
            }
            Some(Entry::Dir(_)) => {
                return Err(DiskError::new(
                    DiskErrorKind::AlreadyExists,
                    format!("a directory is in the way: {path}"),
                ))
            }
            None => {
                let ino = self.alloc();
                self.files.insert(ino, FileData::default());
                self.dir_mut(dir)
                    .cached
                    .insert(name.to_string(), Entry::File(ino));
            }
        }
        Ok(DiskReply::Done)
    }

    fn write(&mut self, path: &str, offset: u64, data: &[u8]) -> Result<DiskReply, DiskError> {
        let ino = self.file_ino(path)?;
        let old_len = self.files.get(&ino).map_or(0, |f| f.cache.len() as u64);
        let end = offset.saturating_add(data.len() as u64);
        if let Some(capacity) = self.capacity {
            let grow = end.saturating_sub(old_len);
            if self.used_bytes().saturating_add(grow) > capacity {
                return Err(DiskError::new(
                    DiskErrorKind::NoSpace,
                    format!("no space left writing {path}"),
                ));
            }
        }
        let file = self.files.entry(ino).or_default();
        let (start, end) = (offset as usize, end as usize);
        if file.cache.len() < end {
            file.cache.resize(end, 0);
        }
        file.cache[start..end].copy_from_slice(data);
        file.dirty_from = file.dirty_from.min(start);
        Ok(DiskReply::Done)
    }

    fn rename(&mut self, from: &str, to: &str) -> Result<DiskReply, DiskError> {
        let (from_dir, from_name) = self.parent_of(from)?;
        let (to_dir, to_name) = self.parent_of(to)?;
        let entry = self
            .dirs
            .get(&from_dir)
            .and_then(|d| d.cached.get(from_name))
            .copied()
            .ok_or_else(|| not_found(from))?;
        self.dir_mut(from_dir).cached.remove(from_name);
        self.dir_mut(to_dir)
            .cached
            .insert(to_name.to_string(), entry);
        Ok(DiskReply::Done)
    }

    fn remove(&mut self, path: &str, recursive: bool) -> Result<DiskReply, DiskError> {
        let (dir, name) = self.parent_of(path)?;
        let entry = self
            .dirs
            .get(&dir)
            .and_then(|d| d.cached.get(name))
            .copied()
            .ok_or_else(|| not_found(path))?;
        if let Entry::Dir(ino) = entry {
            let empty = self.dirs.get(&ino).is_none_or(|d| d.cached.is_empty());
            if !empty && !recursive {
                return Err(DiskError::new(
                    DiskErrorKind::Io,
                    format!("directory not empty: {path}"),
                ));
            }
        } else if recursive {
            return Err(DiskError::new(
                DiskErrorKind::Io,
                format!("not a directory: {path}"),
            ));
        }
        self.dir_mut(dir).cached.remove(name);
        self.maybe_garbage = true;
        Ok(DiskReply::Done)
    }
}

impl DiskExecutor for MemDisk {
    fn execute(&mut self, op: &DiskOp) -> Result<DiskReply, DiskError> {
        match op {
            DiskOp::CreateDir { path } => self.create_dir(path),
            DiskOp::Create { path } => self.create(path),
            DiskOp::Write { path, offset, data } => self.write(path, *offset, data),
            DiskOp::Read { path, offset, len } => {
                let ino = self.file_ino(path)?;
                let cache = self
                    .files
                    .get(&ino)
                    .map(|f| f.cache.as_slice())
                    .unwrap_or_default();
                let start = (*offset).min(cache.len() as u64) as usize;
                let end = offset.saturating_add(*len).min(cache.len() as u64) as usize;
                Ok(DiskReply::Data(Bytes::copy_from_slice(&cache[start..end])))
            }
            DiskOp::SyncFile { path } => {
                let ino = self.file_ino(path)?;
                if self.fail_syncs {
                    return Err(DiskError::new(
                        DiskErrorKind::Io,
                        format!("fsync failed: {path}"),
                    ));
                }
                let file = self.files.entry(ino).or_default();
                let from = file
                    .dirty_from
                    .min(file.cache.len())
                    .min(file.durable.len());
                file.durable.truncate(from);
                file.durable.extend_from_slice(&file.cache[from..]);
                file.dirty_from = file.cache.len();
                Ok(DiskReply::Done)
            }
            DiskOp::SyncDir { path } => {
                let ino = self.dir_ino(path)?;
                let dir = self.dir_mut(ino);
                dir.durable = dir.cached.clone();
                self.collect();
                Ok(DiskReply::Done)
            }
            DiskOp::Truncate { path, len } => {
                let ino = self.file_ino(path)?;
                let file = self.files.entry(ino).or_default();
                file.cache.resize(*len as usize, 0);
                file.dirty_from = file.dirty_from.min(*len as usize);
                Ok(DiskReply::Done)
            }
            DiskOp::Rename { from, to } => self.rename(from, to),
            DiskOp::Remove { path } => self.remove(path, false),
            DiskOp::RemoveDirAll { path } => self.remove(path, true),
            DiskOp::List { path } => {
                let ino = self.dir_ino(path)?;
                let mut entries = Vec::new();
                if let Some(dir) = self.dirs.get(&ino) {
                    for (name, entry) in &dir.cached {
                        let (is_dir, size) = match *entry {
                            Entry::Dir(_) => (true, 0),
                            Entry::File(f) => (
                                false,
                                self.files.get(&f).map_or(0, |f| f.cache.len() as u64),
                            ),
                        };
                        entries.push(DirEntry {
                            name: name.clone(),
                            is_dir,
                            size,
                        });
                    }
                }
                Ok(DiskReply::Listing(entries))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(disk: &mut MemDisk, op: DiskOp) -> Result<DiskReply, DiskError> {
        disk.execute(&op)
    }

    fn write(path: &str, offset: u64, data: &'static [u8]) -> DiskOp {
        DiskOp::Write {
            path: path.into(),
            offset,
            data: Bytes::from_static(data),
        }
    }

    fn setup_file(disk: &mut MemDisk) {
        run(disk, DiskOp::CreateDir { path: "d".into() }).unwrap();
        run(disk, DiskOp::SyncDir { path: "".into() }).unwrap();
        run(disk, DiskOp::Create { path: "d/f".into() }).unwrap();
        run(disk, DiskOp::SyncDir { path: "d".into() }).unwrap();
    }

    #[test]
    fn crash_loses_unsynced_write_keeps_synced() {
        let mut disk = MemDisk::new();
        setup_file(&mut disk);
        run(&mut disk, write("d/f", 0, b"hello")).unwrap();
        run(&mut disk, DiskOp::SyncFile { path: "d/f".into() }).unwrap();
        run(&mut disk, write("d/f", 5, b" world")).unwrap();
        assert_eq!(
            disk.read_all("d/f").unwrap(),
            Bytes::from_static(b"hello world")
        );
        disk.crash();
        assert_eq!(disk.read_all("d/f").unwrap(), Bytes::from_static(b"hello"));
    }

    #[test]
    fn unsynced_new_file_vanishes() {
        let mut disk = MemDisk::new();
        setup_file(&mut disk);
        run(&mut disk, DiskOp::Create { path: "d/g".into() }).unwrap();
        run(&mut disk, write("d/g", 0, b"x")).unwrap();
        run(&mut disk, DiskOp::SyncFile { path: "d/g".into() }).unwrap();
        assert_eq!(disk.files(), vec!["d/f".to_string(), "d/g".to_string()]);
        disk.crash();
        assert_eq!(disk.files(), vec!["d/f".to_string()]);
    }

    #[test]
    fn rename_durable_only_after_syncdir() {
        let mut disk = MemDisk::new();
        setup_file(&mut disk);
        run(&mut disk, write("d/f", 0, b"old")).unwrap();
        run(&mut disk, DiskOp::SyncFile { path: "d/f".into() }).unwrap();
        run(
            &mut disk,
            DiskOp::Create {
                path: "d/f.tmp".into(),
            },
        )
        .unwrap();
        run(&mut disk, write("d/f.tmp", 0, b"new")).unwrap();
        run(
            &mut disk,
            DiskOp::SyncFile {
                path: "d/f.tmp".into(),
            },
        )
        .unwrap();
        run(
            &mut disk,
            DiskOp::Rename {
                from: "d/f.tmp".into(),
                to: "d/f".into(),
            },
        )
        .unwrap();
        let mut before = disk.clone();
        before.crash();
        assert_eq!(before.read_all("d/f").unwrap(), Bytes::from_static(b"old"));
        run(&mut disk, DiskOp::SyncDir { path: "d".into() }).unwrap();
        disk.crash();
        assert_eq!(disk.read_all("d/f").unwrap(), Bytes::from_static(b"new"));
        assert_eq!(disk.files(), vec!["d/f".to_string()]);
    }

    #[test]
    fn errors_and_knobs() {
        let mut disk = MemDisk::new();
        assert_eq!(
            run(&mut disk, write("nope", 0, b"x")).unwrap_err().kind,
            DiskErrorKind::NotFound
        );
        assert_eq!(
            run(&mut disk, DiskOp::Create { path: "a/b".into() })
                .unwrap_err()
                .kind,
            DiskErrorKind::NotFound
        );
        setup_file(&mut disk);
        disk.set_capacity(Some(4));
        assert_eq!(
            run(&mut disk, write("d/f", 0, b"hello")).unwrap_err().kind,
            DiskErrorKind::NoSpace
        );
        run(&mut disk, write("d/f", 0, b"hell")).unwrap();
        disk.fail_syncs(true);
        assert_eq!(
            run(&mut disk, DiskOp::SyncFile { path: "d/f".into() })
                .unwrap_err()
                .kind,
            DiskErrorKind::Io
        );
        let listing = run(&mut disk, DiskOp::List { path: "d".into() }).unwrap();
        assert_eq!(
            listing,
            DiskReply::Listing(vec![DirEntry {
                name: "f".into(),
                is_dir: false,
                size: 4
            }])
        );
        run(&mut disk, DiskOp::RemoveDirAll { path: "d".into() }).unwrap();
        assert!(disk.files().is_empty());
        let mut crashed = disk.clone();
        crashed.crash();
        assert_eq!(crashed.files(), vec!["d/f".to_string()]);
        // Once the removal is durable the content is gone for good (and freed).
        run(&mut disk, DiskOp::SyncDir { path: "".into() }).unwrap();
        assert!(disk.files.is_empty());
        disk.crash();
        assert!(disk.files().is_empty());
    }

    /// Syncs copy only what changed since the last one; overwrites in the
    /// middle and truncations must still all reach the durable view.
    #[test]
    fn incremental_sync_covers_overwrites_and_truncation() {
        let mut disk = MemDisk::new();
        run(&mut disk, DiskOp::Create { path: "f".into() }).unwrap();
        run(&mut disk, DiskOp::SyncDir { path: "".into() }).unwrap();
        let sync = || DiskOp::SyncFile { path: "f".into() };
        run(&mut disk, write("f", 0, b"aaaaaaaa")).unwrap();
        run(&mut disk, sync()).unwrap();
        run(&mut disk, write("f", 2, b"BB")).unwrap();
        run(&mut disk, write("f", 8, b"cc")).unwrap();
        run(&mut disk, sync()).unwrap();
        let mut crashed = disk.clone();
        crashed.crash();
        assert_eq!(crashed.read_all("f").unwrap().as_ref(), b"aaBBaaaacc");
        run(
            &mut disk,
            DiskOp::Truncate {
                path: "f".into(),
                len: 3,
            },
        )
        .unwrap();
        run(&mut disk, write("f", 3, b"d")).unwrap();
        run(&mut disk, sync()).unwrap();
        disk.crash();
        assert_eq!(disk.read_all("f").unwrap().as_ref(), b"aaBd");
    }
}
