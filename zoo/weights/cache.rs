//! The local weights cache: `$ZOO_HOME/weights/` (default `<user cache dir>/zoo/weights/`).
//!
//! Beside each verified file `F` live `F.verified` (a JSON sidecar: the full digest and the
//! file's identity recorded after verification, so a later use skips rehashing while the file is
//! provably the same), `F.lock` (an exclusive fs4 lock held while `F` is being produced, removed
//! by its holder when done) and, during a download, `F.part`. `F` itself only ever appears by an
//! atomic rename of a verified file.
//!
//! "Provably the same" cannot rest on size and mtime alone: any user can write other bytes of
//! the same size and set the mtime back. The sidecar also records the device, inode and
//! status-change time (ctime): a file renamed over `F` has another inode, and writing or
//! `utime`-ing `F` in place moves its ctime, which user space cannot set back. Where those are
//! not available (not Unix) the fast path is off and every check rehashes.
//! [`Cache::recheck`] (`zoo weights verify`) always rehashes.
//!
//! Sidecars are written through `F.verified.tmp-<pid>-<n>`; a write cut short (the process
//! killed) leaves such a file, and a holder that died leaves `F.lock`. [`Cache::clean_stale`]
//! removes both once provably stale: the writer's process is gone (or the file is a day old), the
//! lock is held by nobody.
use std::fs::{self, File};
use std::io;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};

use super::digest::{hash_file, Algorithm};
use super::manifest::WeightsEntry;

/// The zoo's home folder: `$ZOO_HOME`, else `<user cache dir>/zoo`.
pub fn zoo_home() -> PathBuf {
    match std::env::var_os("ZOO_HOME") {
        Some(h) if !h.is_empty() => PathBuf::from(h),
        _ => dirs::cache_dir().unwrap_or_else(std::env::temp_dir).join("zoo"),
    }
}

/// The sidecar written after a file was verified.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Sidecar {
    /// Entry the file was verified for.
    pub entry: String,
    /// File size in bytes at verification.
    pub size: u64,
    /// Modification time at verification: seconds since the Unix epoch.
    pub mtime_secs: u64,
    /// Modification time at verification: nanoseconds within the second.
    pub mtime_nanos: u32,
    /// Hash function of `digest`.
    pub algorithm: String,
    /// Full digest of the file, lowercase hex.
    pub digest: String,
    /// Whether `digest` was checked against a published one (false: recorded on trust).
    pub published: bool,
    /// Device, inode and status-change time of the file at verification (absent in sidecars
    /// of older versions and off Unix: then the file is rehashed).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub identity: Option<FileIdentity>,
}

/// What identifies one version of a file beyond size and mtime (see the module documentation).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct FileIdentity {
    /// Device number.
    pub dev: u64,
    /// Inode number.
    pub inode: u64,
    /// Status-change time, seconds since the Unix epoch.
    pub ctime_secs: i64,
    /// Status-change time, nanoseconds within the second.
    pub ctime_nanos: i64,
}

impl FileIdentity {
    /// The identity of the file `meta` describes; `None` where the platform has none.
    pub fn of(meta: &fs::Metadata) -> Option<Self> {
        #[cfg(unix)]
        {
            use std::os::unix::fs::MetadataExt;
            Some(FileIdentity {
                dev: meta.dev(),
                inode: meta.ino(),
                ctime_secs: meta.ctime(),
                ctime_nanos: meta.ctime_nsec(),
            })
        }
        #[cfg(not(unix))]
        {
            let _ = meta;
            None
        }
    }
}

/// What the cache holds for an entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CacheState {
    /// No file.
    Missing,
    /// The file matches; `rehashed` is false when the sidecar vouched for it without reading it.
    Verified { path: PathBuf, rehashed: bool },
    /// The file's digest differs from the expected one.
    Corrupted { path: PathBuf, expected: String, actual: String },
    /// The entry has no published digest and no digest was recorded for this file.
    Unrecorded { path: PathBuf },
    /// The file could not be read.
    Unreadable { path: PathBuf, error: String },
}

/// The weights folder of one zoo home.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cache {
    dir: PathBuf,
}

impl Cache {
    /// The cache of a zoo home; files go under `<home>/weights`.
    pub fn new(home: impl Into<PathBuf>) -> Self {
        Cache { dir: home.into().join("weights") }
    }

    /// The cache of [`zoo_home`].
    pub fn from_env() -> Self {
        Self::new(zoo_home())
    }

    /// The folder holding the weights files.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Where an entry's verified file lives (whether or not it is there yet).
    pub fn path_of(&self, entry: &WeightsEntry) -> PathBuf {
        self.dir.join(entry.file_name())
    }

    /// `<file>.<suffix>` beside the entry's file.
    pub(crate) fn with_suffix(&self, entry: &WeightsEntry, suffix: &str) -> PathBuf {
        self.dir.join(format!("{}.{suffix}", entry.file_name()))
    }

    /// The sidecar path of an entry's file.
    pub fn sidecar_path(&self, entry: &WeightsEntry) -> PathBuf {
        self.with_suffix(entry, "verified")
    }

    /// Takes the entry's exclusive lock, waiting for another holder (thread or process) to finish.
    /// The lock file is removed when the lock is dropped.
    pub fn lock(&self, entry: &WeightsEntry) -> io::Result<CacheLock> {
        fs::create_dir_all(&self.dir)?;
        let path = self.with_suffix(entry, "lock");
        loop {
            let file = File::options().create(true).truncate(false).read(true).write(true).open(&path)?;
            if !fs4::fs_std::FileExt::try_lock_exclusive(&file)? {
                eprintln!("waiting for another download of {} to finish", entry.file_name());
                fs4::fs_std::FileExt::lock_exclusive(&file)?;
            }
            // The previous holder removes the file as it finishes: a lock won on a removed file
            // guards nothing (a third process may lock a new file at the path), so try again.
            if is_same_file(&file, &path) {
                return Ok(CacheLock { file, path });
            }
        }
    }

    /// Removes what interrupted runs left behind: sidecar temporaries whose writer is gone (its
    /// process no longer exists, or the file is a day old) and lock files nobody holds. Partial
    /// downloads (`.part`) stay: the next fetch resumes them. Returns what was removed.
    pub fn clean_stale(&self) -> io::Result<Vec<PathBuf>> {
        let mut removed = Vec::new();
        let entries = match fs::read_dir(&self.dir) {
            Ok(rd) => rd,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(removed),
            Err(e) => return Err(e),
        };
        for e in entries {
            let path = e?.path();
            let Some(name) = path.file_name().and_then(|n| n.to_str()) else { continue };
            let gone = if name.ends_with(".lock") {
                remove_unheld_lock(&path)
            } else {
                let stale = match temp_writer(name) {
                    Some(pid) => !process_alive(pid) || older_than(&path, Duration::from_secs(24 * 3600)),
                    // `F.verified.tmp`: the fixed name of versions before the per-writer names.
                    None => name.ends_with(".verified.tmp") && older_than(&path, Duration::from_secs(60)),
                };
                stale && fs::remove_file(&path).is_ok()
            };
            if gone {
                removed.push(path);
            }
        }
        Ok(removed)
    }

    /// Checks the cached file of an entry: cheaply through the sidecar while the file is provably
    /// the one verified (size, mtime, device, inode and ctime unchanged), else by rehashing (and
    /// then rewriting the sidecar when the file is good).
    pub fn check(&self, entry: &WeightsEntry) -> io::Result<CacheState> {
        self.check_with(entry, true)
    }

    /// Checks the cached file of an entry by rehashing it, whatever the sidecar says.
    pub fn recheck(&self, entry: &WeightsEntry) -> io::Result<CacheState> {
        self.check_with(entry, false)
    }

    fn check_with(&self, entry: &WeightsEntry, trust_sidecar: bool) -> io::Result<CacheState> {
        let path = self.path_of(entry);
        let meta = match fs::metadata(&path) {
            Ok(m) => m,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(CacheState::Missing),
            Err(e) => return Err(e),
        };
        let expected = entry.expected_digest();
        let sidecar = self.read_sidecar(entry);
        let (secs, nanos) = mtime_of(&meta);
        if let Some(s) = sidecar.as_ref().filter(|_| trust_sidecar) {
            let same_file = s.size == meta.len()
                && s.mtime_secs == secs
                && s.mtime_nanos == nanos
                && s.identity.is_some()
                && s.identity == FileIdentity::of(&meta);
            let still_good = match &expected {
                Some(x) => s.algorithm == x.algorithm.name() && x.matches(&s.digest),
                None => true,
            };
            if same_file && still_good {
                return Ok(CacheState::Verified { path, rehashed: false });
            }
        }
        let (algorithm, want, published) = match (&expected, &sidecar) {
            (Some(x), _) => (x.algorithm, x.to_string(), true),
            (None, Some(s)) if s.algorithm == Algorithm::Sha256.name() => {
                (Algorithm::Sha256, format!("sha256 {} (recorded when first fetched)", s.digest), false)
            }
            (None, _) => return Ok(CacheState::Unrecorded { path }),
        };
        let actual = hash_file(&path, algorithm)?;
        let good = match &expected {
            Some(x) => x.matches(&actual),
            None => sidecar.as_ref().is_some_and(|s| s.digest == actual),
        };
        if good {
            self.write_sidecar(entry, algorithm, &actual, published)?;
            Ok(CacheState::Verified { path, rehashed: true })
        } else {
            Ok(CacheState::Corrupted { path, expected: want, actual: format!("{algorithm} {actual}") })
        }
    }

    /// The sidecar of an entry's file, if present and readable.
    pub fn read_sidecar(&self, entry: &WeightsEntry) -> Option<Sidecar> {
        let text = fs::read_to_string(self.sidecar_path(entry)).ok()?;
        serde_json::from_str(&text).ok()
    }

    /// Records the digest of the entry's file as it is now (size and mtime included).
    pub(crate) fn write_sidecar(
        &self,
        entry: &WeightsEntry,
        algorithm: Algorithm,
        digest: &str,
        published: bool,
    ) -> io::Result<()> {
        let meta = fs::metadata(self.path_of(entry))?;
        let (mtime_secs, mtime_nanos) = mtime_of(&meta);
        let sidecar = Sidecar {
            entry: entry.name.clone(),
            size: meta.len(),
            mtime_secs,
            mtime_nanos,
            algorithm: algorithm.name().to_string(),
            digest: digest.to_string(),
            published,
            identity: FileIdentity::of(&meta),
        };
        // A name per writer: checks run without the lock, so two processes may write at once.
        static COUNTER: AtomicU64 = AtomicU64::new(0);
        let n = COUNTER.fetch_add(1, Ordering::Relaxed);
        let tmp = self.with_suffix(entry, &format!("verified.tmp-{}-{n}", std::process::id()));
        let written = fs::write(&tmp, serde_json::to_vec_pretty(&sidecar).map_err(io::Error::other)?)
            .and_then(|()| fs::rename(&tmp, self.sidecar_path(entry)));
        if written.is_err() {
            let _ = fs::remove_file(&tmp);
        }
        written
    }

    /// Removes the entry's file and sidecar (missing ones are fine).
    pub(crate) fn remove(&self, entry: &WeightsEntry) -> io::Result<()> {
        for p in [self.path_of(entry), self.sidecar_path(entry)] {
            match fs::remove_file(p) {
                Err(e) if e.kind() != io::ErrorKind::NotFound => return Err(e),
                _ => {}
            }
        }
        Ok(())
    }
}

/// An entry's exclusive cache lock; released (and its file removed) when dropped.
#[derive(Debug)]
pub struct CacheLock {
    file: File,
    path: PathBuf,
}

impl Drop for CacheLock {
    fn drop(&mut self) {
        // Removed while still locked, so no one can lock this file and then lose it; closing
        // `file` afterwards releases the lock.
        if is_same_file(&self.file, &self.path) {
            let _ = fs::remove_file(&self.path);
        }
    }
}

/// Whether `file` is the file at `path` now (not one removed or replaced since it was opened).
fn is_same_file(file: &File, path: &Path) -> bool {
    #[cfg(unix)]
    {
        use std::os::unix::fs::MetadataExt;
        match (file.metadata(), fs::metadata(path)) {
            (Ok(a), Ok(b)) => a.dev() == b.dev() && a.ino() == b.ino(),
            _ => false,
        }
    }
    #[cfg(not(unix))]
    {
        let _ = (file, path);
        true
    }
}

/// Removes `path` if it is a lock file nobody holds (a holder that died leaves it; the kernel
/// has released its lock). It is removed while this process holds it, then released.
fn remove_unheld_lock(path: &Path) -> bool {
    let Ok(file) = File::options().read(true).write(true).open(path) else { return false };
    fs4::fs_std::FileExt::try_lock_exclusive(&file).unwrap_or(false)
        && is_same_file(&file, path)
        && fs::remove_file(path).is_ok()
}

/// The writer's process id of a `<name>.tmp-<pid>-<n>` temporary.
fn temp_writer(name: &str) -> Option<u32> {
    let (_, tail) = name.rsplit_once(".tmp-")?;
    let (pid, n) = tail.split_once('-')?;
    n.parse::<u64>().ok()?;
    pid.parse().ok()
}

/// Whether process `pid` exists (always assumed where `/proc` is missing).
pub(crate) fn process_alive(pid: u32) -> bool {
    let proc = Path::new("/proc");
    !proc.join("self").exists() || proc.join(pid.to_string()).exists()
}

fn older_than(path: &Path, age: Duration) -> bool {
    fs::metadata(path)
        .and_then(|m| m.modified())
        .is_ok_and(|t| SystemTime::now().duration_since(t).is_ok_and(|d| d > age))
}

fn mtime_of(meta: &fs::Metadata) -> (u64, u32) {
    meta.modified()
        .ok()
        .and_then(|t| t.duration_since(UNIX_EPOCH).ok())
        .map_or((0, 0), |d| (d.as_secs(), d.subsec_nanos()))
}
