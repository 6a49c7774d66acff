//! The local weights cache: `$ZOO_HOME/weights/` (default `<user cache dir>/zoo/weights/`).
//!
//! Beside each verified file `F` live `F.verified` (a JSON sidecar: size, mtime and full digest
//! recorded after verification, so a later use skips rehashing while size and mtime still match),
//! `F.lock` (an exclusive fs4 lock held while `F` is being produced) and, during a download,
//! `F.part`. `F` itself only ever appears by an atomic rename of a verified file.
use std::fs::{self, File};
use std::io;
use std::path::{Path, PathBuf};
use std::time::UNIX_EPOCH;

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
    pub fn lock(&self, entry: &WeightsEntry) -> io::Result<CacheLock> {
        fs::create_dir_all(&self.dir)?;
        let path = self.with_suffix(entry, "lock");
        let file = File::options().create(true).truncate(false).read(true).write(true).open(&path)?;
        if !fs4::fs_std::FileExt::try_lock_exclusive(&file)? {
            eprintln!("waiting for another download of {} to finish", entry.file_name());
            fs4::fs_std::FileExt::lock_exclusive(&file)?;
        }
        Ok(CacheLock { _file: file })
    }

    /// Checks the cached file of an entry: cheaply through the sidecar when size and mtime still
    /// match it, else by rehashing (and then rewriting the sidecar when the file is good).
    pub fn check(&self, entry: &WeightsEntry) -> io::Result<CacheState> {
        let path = self.path_of(entry);
        let meta = match fs::metadata(&path) {
            Ok(m) => m,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(CacheState::Missing),
            Err(e) => return Err(e),
        };
        let expected = entry.expected_digest();
        let sidecar = self.read_sidecar(entry);
        let (secs, nanos) = mtime_of(&meta);
        if let Some(s) = &sidecar {
            let same_file = s.size == meta.len() && s.mtime_secs == secs && s.mtime_nanos == nanos;
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
        };
        let tmp = self.with_suffix(entry, "verified.tmp");
        fs::write(&tmp, serde_json::to_vec_pretty(&sidecar).map_err(io::Error::other)?)?;
        fs::rename(tmp, self.sidecar_path(entry))
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

/// An entry's exclusive cache lock; released when dropped.
#[derive(Debug)]
pub struct CacheLock {
    _file: File,
}

fn mtime_of(meta: &fs::Metadata) -> (u64, u32) {
    meta.modified()
        .ok()
        .and_then(|t| t.duration_since(UNIX_EPOCH).ok())
        .map_or((0, 0), |d| (d.as_secs(), d.subsec_nanos()))
}
