//! The verifying downloader: fetches an entry's file into the cache, or imports one by hand.
//!
//! A fetch tries `$ZOO_MIRROR` and then the entry's URLs. Each HTTP source streams into
//! `<file>.part` while hashing, resumes an interrupted transfer with a `Range` request (after
//! hashing the bytes already there; a server that answers `200` instead restarts it), retries
//! transient failures (connect errors, stalls past the read timeout, 5xx, 408, 429, dropped
//! bodies) with exponential backoff, and gives up at once on a 404 and on a host name that does
//! not resolve (the system resolver has already retried). The file is renamed into place
//! only after its digest matches; a mismatching download is deleted and the error shows both
//! digests. An exclusive lock per file keeps concurrent fetches (threads or processes) from
//! colliding: the second waits and then finds the verified file.
use std::fmt;
use std::fs::{self, File};
use std::io::{self, IsTerminal, Read, Write};
use std::path::{Path, PathBuf};
use std::time::Duration;

use super::cache::{Cache, CacheState};
use super::digest::{Algorithm, Hasher};
use super::hub::{self, HubCaches, Looked};
use super::manifest::{percent_decode, Manifest, WeightsEntry};
use crate::progress::Bar;

/// How [`fetch`] and [`import`] behave. [`FetchOptions::from_env`] reads the environment;
/// tests and the CLI may set fields directly.
#[derive(Debug, Clone)]
pub struct FetchOptions {
    /// Where verified files live.
    pub cache: Cache,
    /// Never touch the network (`ZOO_OFFLINE=1`): only the cache, local mirrors and local sources.
    pub offline: bool,
    /// Tried before the entry's URLs (`ZOO_MIRROR`): a base URL (the file name is appended) or a
    /// local folder, laid out like the cache's `weights/` folder.
    pub mirror: Option<String>,
    /// Accept entries without a published digest (`--trust-unverified`, `ZOO_TRUST_UNVERIFIED=1`).
    pub trust_unverified: bool,
    /// Attempts per HTTP source (at least 1).
    pub attempts: u32,
    /// Wait before the first retry; doubled after each further failure.
    pub backoff: Duration,
    /// Longest wait between retries.
    pub max_backoff: Duration,
    /// Limit for establishing a connection.
    pub connect_timeout: Duration,
    /// Limit for waiting on the response head or on any read of the body.
    pub read_timeout: Duration,
    /// Draw a progress bar on stderr.
    pub progress: bool,
    /// Other caches to find the verified file in, used in place (torch.hub's, the Hugging Face
    /// hub's); none for [`FetchOptions::new`], the environment's for [`FetchOptions::from_env`].
    pub hubs: HubCaches,
}

impl FetchOptions {
    /// Defaults for a cache: online, no mirror, verified entries only, 5 attempts starting at a
    /// 1 s backoff, 30 s connect and 60 s read timeouts, a progress bar when stderr is a terminal.
    pub fn new(cache: Cache) -> Self {
        FetchOptions {
            cache,
            offline: false,
            mirror: None,
            trust_unverified: false,
            attempts: 5,
            backoff: Duration::from_secs(1),
            max_backoff: Duration::from_secs(30),
            connect_timeout: Duration::from_secs(30),
            read_timeout: Duration::from_secs(60),
            progress: io::stderr().is_terminal(),
            hubs: HubCaches::default(),
        }
    }

    /// [`FetchOptions::new`] for the cache of `$ZOO_HOME`, with `ZOO_OFFLINE` (or
    /// `HF_HUB_OFFLINE`), `ZOO_MIRROR` and `ZOO_TRUST_UNVERIFIED` applied, and the torch.hub and
    /// Hugging Face caches of the environment ([`HubCaches::from_env`]).
    pub fn from_env() -> Self {
        let mut opts = Self::new(Cache::from_env());
        opts.offline = env_flag("ZOO_OFFLINE") || env_flag("HF_HUB_OFFLINE");
        opts.hubs = HubCaches::from_env();
        opts.trust_unverified = env_flag("ZOO_TRUST_UNVERIFIED");
        opts.mirror = std::env::var("ZOO_MIRROR").ok().filter(|m| !m.trim().is_empty());
        opts
    }
}

fn env_flag(name: &str) -> bool {
    std::env::var(name)
        .map(|v| matches!(v.trim().to_ascii_lowercase().as_str(), "1" | "true" | "yes" | "on"))
        .unwrap_or(false)
}

/// Why one source did not deliver the file.
#[derive(Debug, thiserror::Error)]
pub enum SourceError {
    /// HTTP 404 or 410: the file is not there; not retried.
    #[error("404 Not Found: {url} does not exist (any more)")]
    NotFound { url: String },
    /// The URL's host name does not resolve; not retried.
    #[error("the host name {host} of {url} does not resolve ({detail}): check the URL, or the network's DNS")]
    Unresolved { url: String, host: String, detail: String },
    /// Another non-retryable HTTP status.
    #[error("HTTP {status} from {url}")]
    Status { url: String, status: u16 },
    /// Transient failures until the attempts ran out.
    #[error("{url}: gave up after {attempts} attempt(s); last: {last}")]
    Exhausted { url: String, attempts: u32, last: String },
    /// The content does not match the published digest; the unverified copy was deleted (never
    /// the source).
    #[error(
        "digest mismatch for {what}: expected {expected}, got {actual}; the unverified copy in the cache was \
         removed (the source is untouched)"
    )]
    DigestMismatch { what: String, expected: String, actual: String },
    /// The digest matched but the size recorded in the manifest did not.
    #[error(
        "size mismatch for {what}: expected {expected} bytes, got {actual}; the unverified copy in the cache was \
         removed (the source is untouched)"
    )]
    SizeMismatch { what: String, expected: u64, actual: u64 },
    /// A local source that does not exist.
    #[error("{path}: no such file")]
    MissingLocal { path: PathBuf },
    /// An archive that is not a zip or lacks the member.
    #[error("{what}: {message}")]
    Archive { what: String, message: String },
    /// A local I/O failure.
    #[error("{what}: {source}")]
    Io {
        what: String,
        #[source]
        source: io::Error,
    },
}

/// One source tried and how it failed.
#[derive(Debug)]
pub struct SourceFailure {
    /// The URL or path.
    pub source: String,
    /// What went wrong.
    pub error: SourceError,
}

/// Why [`fetch`] or [`import`] failed.
#[derive(Debug, thiserror::Error)]
pub enum FetchError {
    /// The entry publishes no digest and trust was not given.
    #[error(
        "{name} has no published digest, so {file} cannot be verified; rerun with --trust-unverified \
         (or ZOO_TRUST_UNVERIFIED=1) to accept it as served, import a copy you trust with \
         `zoo weights import FILE --as {name}`, or pick an entry with a digest (`zoo weights list {arch}`)"
    )]
    Unverified { name: String, arch: String, file: String },
    /// Offline and the file is neither cached nor available from a local source.
    #[error("{}", offline_message(.name, .file, .expected_at, .looked, .tried))]
    Offline {
        name: String,
        file: String,
        expected_at: PathBuf,
        /// The other caches looked in (boxed: the error stays small).
        looked: Box<Vec<Looked>>,
        tried: Vec<SourceFailure>,
    },
    /// Every source failed.
    #[error("{}", failed_message(.name, .file, .failures))]
    Failed { name: String, file: String, failures: Vec<SourceFailure> },
    /// An import whose content does not match the entry.
    #[error("refusing to import {} as {name}: {reason}", .file.display())]
    Rejected { name: String, file: PathBuf, reason: Box<SourceError> },
    /// The cache could not be read or written.
    #[error("{context}: {source}")]
    Io {
        context: String,
        #[source]
        source: io::Error,
    },
}

fn offline_message(name: &str, file: &str, expected_at: &Path, looked: &[Looked], tried: &[SourceFailure]) -> String {
    let mut s = format!(
        "offline (ZOO_OFFLINE or HF_HUB_OFFLINE set): not touching the network, and {file} for {name} is \
         not in the cache (expected at {}). Import a copy with `zoo weights import FILE --as {name}` (without \
         --as the file's digest names its entry), put it in the torch.hub cache, or set ZOO_MIRROR to a local \
         folder holding {file}. Looked in:\n  - \
         {} (zoo cache): not there",
        expected_at.display(),
        expected_at.display()
    );
    for l in looked {
        s.push_str(&format!("\n  - {} ({}): {}", l.candidate.path.display(), l.candidate.kind, l.outcome));
    }
    for f in tried {
        s.push_str(&format!("\n  - {}: {}", f.source, f.error));
    }
    s
}

fn failed_message(name: &str, file: &str, failures: &[SourceFailure]) -> String {
    let mut s = format!("could not fetch {name} ({file}):");
    for f in failures {
        s.push_str(&format!("\n  - {}: {}", f.source, f.error));
    }
    s.push_str(&format!(
        "\nWhat to do: set ZOO_MIRROR to a mirror (a base URL or a local folder) that has {file}; or \
         download {file} by other means and run `zoo weights import FILE --as {name}` (then ZOO_OFFLINE=1 \
         keeps zoo off the network)."
    ));
    s
}

fn io_err(context: impl Into<String>) -> impl FnOnce(io::Error) -> FetchError {
    let context = context.into();
    move |source| FetchError::Io { context, source }
}

/// Where a source is.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Location {
    Http(String),
    Local(PathBuf),
}

impl fmt::Display for Location {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Location::Http(u) => f.write_str(u),
            Location::Local(p) => write!(f, "{}", p.display()),
        }
    }
}

/// A source to try: where, and whether what it serves is an archive to extract.
#[derive(Debug, Clone)]
struct Planned {
    location: Location,
    archive: bool,
}

fn parse_location(s: &str) -> Location {
    let t = s.trim();
    let lower = t.to_ascii_lowercase();
    if lower.starts_with("http://") || lower.starts_with("https://") {
        Location::Http(t.to_string())
    } else if lower.starts_with("file://") {
        let rest = &t["file://".len()..];
        let rest = rest.strip_prefix("localhost").unwrap_or(rest);
        Location::Local(PathBuf::from(percent_decode(rest)))
    } else {
        Location::Local(project_relative(PathBuf::from(t)))
    }
}

/// A relative local source of the built-in manifest (a checkpoint shipped in the repository,
/// such as LeNet-5's) is found from the working directory, else from the project the binary was
/// built from.
fn project_relative(p: PathBuf) -> PathBuf {
    if p.is_relative() && !p.exists() {
        let q = Path::new(env!("CARGO_MANIFEST_DIR")).join(&p);
        if q.exists() {
            return q;
        }
    }
    p
}

/// The mirror (serving the verified file as cached) first, then the entry's URLs.
fn plan(entry: &WeightsEntry, opts: &FetchOptions) -> Vec<Planned> {
    let mut out = Vec::new();
    if let Some(m) = &opts.mirror {
        let location = match parse_location(m) {
            Location::Http(base) => Location::Http(format!("{}/{}", base.trim_end_matches('/'), entry.file_name())),
            Location::Local(dir) => Location::Local(dir.join(entry.file_name())),
        };
        out.push(Planned { location, archive: false });
    }
    let archive = entry.archive_member().is_some();
    out.extend(entry.urls.iter().map(|u| Planned { location: parse_location(u), archive }));
    out
}

/// Where an entry's verified file lives in the cache of `opts` (whether or not it is there).
pub fn path_of(entry: &WeightsEntry, opts: &FetchOptions) -> PathBuf {
    opts.cache.path_of(entry)
}

/// The verified local file of an entry, downloading it first when the cache lacks it (or holds a
/// corrupted copy, which is replaced).
pub fn fetch(entry: &WeightsEntry, opts: &FetchOptions) -> Result<PathBuf, FetchError> {
    let cache = &opts.cache;
    let check =
        |cache: &Cache| cache.check(entry).map_err(io_err(format!("checking {}", cache.path_of(entry).display())));
    if let CacheState::Verified { path, .. } = check(cache)? {
        return Ok(path);
    }
    // Leftovers of interrupted runs; failing to remove them must not stop the fetch.
    let _ = cache.clean_stale();
    // Files users already downloaded with torch.hub or huggingface_hub, used in place.
    let looked = match hub::find(entry, &opts.hubs, cache.dir(), opts.trust_unverified) {
        Ok(path) => return Ok(path),
        Err(looked) => looked,
    };
    if !entry.is_verifiable() && !opts.trust_unverified {
        if opts.offline {
            let (name, file, expected_at) = (entry.name.clone(), entry.file_name(), cache.path_of(entry));
            return Err(FetchError::Offline { name, file, expected_at, looked: Box::new(looked), tried: Vec::new() });
        }
        return Err(unverified(entry));
    }
    let _lock =
        cache.lock(entry).map_err(io_err(format!("locking {} in {}", entry.file_name(), cache.dir().display())))?;
    // Whoever held the lock before may have produced the file meanwhile.
    match check(cache)? {
        CacheState::Verified { path, .. } => return Ok(path),
        CacheState::Corrupted { path, expected, actual } => {
            eprintln!(
                "{}: cached file is corrupted (expected {expected}, got {actual}); fetching it again",
                path.display()
            );
            cache.remove(entry).map_err(io_err(format!("removing {}", path.display())))?;
        }
        CacheState::Unrecorded { path } => {
            // Only reached with trust given: record what is there.
            let digest = super::digest::hash_file(&path, Algorithm::Sha256)
                .map_err(io_err(format!("hashing {}", path.display())))?;
            cache.write_sidecar(entry, Algorithm::Sha256, &digest, false).map_err(io_err("writing the sidecar"))?;
            return Ok(path);
        }
        CacheState::Missing | CacheState::Unreadable { .. } => {}
    }
    fs::create_dir_all(cache.dir()).map_err(io_err(format!("creating {}", cache.dir().display())))?;

    let mut failures = Vec::new();
    for planned in plan(entry, opts) {
        if opts.offline && matches!(planned.location, Location::Http(_)) {
            continue;
        }
        let result = match &planned.location {
            Location::Http(url) => fetch_http(url, planned.archive, entry, opts),
            Location::Local(path) => install_local(path, planned.archive, entry, opts),
        };
        match result {
            Ok(path) => return Ok(path),
            Err(error) => failures.push(SourceFailure { source: planned.location.to_string(), error }),
        }
    }
    if opts.offline {
        Err(FetchError::Offline {
            name: entry.name.clone(),
            file: entry.file_name(),
            expected_at: cache.path_of(entry),
            looked: Box::new(looked),
            tried: failures,
        })
    } else {
        Err(FetchError::Failed { name: entry.name.clone(), file: entry.file_name(), failures })
    }
}

fn unverified(entry: &WeightsEntry) -> FetchError {
    FetchError::Unverified { name: entry.name.clone(), arch: entry.arch().to_string(), file: entry.file_name() }
}

/// Copies (or, for an archive, extracts from) a local file into the cache once it verifies.
/// `import` accepts an archive holding the member as well as the bare file.
pub fn import(file: &Path, entry: &WeightsEntry, opts: &FetchOptions) -> Result<PathBuf, FetchError> {
    if !entry.is_verifiable() && !opts.trust_unverified {
        return Err(unverified(entry));
    }
    if !file.is_file() {
        return Err(FetchError::Rejected {
            name: entry.name.clone(),
            file: file.to_path_buf(),
            reason: Box::new(SourceError::MissingLocal { path: file.to_path_buf() }),
        });
    }
    let cache = &opts.cache;
    let _lock =
        cache.lock(entry).map_err(io_err(format!("locking {} in {}", entry.file_name(), cache.dir().display())))?;
    let archive = entry.archive_member().is_some_and(|m| zip_has_member(file, &m).unwrap_or(false));
    install_local(file, archive, entry, opts).map_err(|reason| FetchError::Rejected {
        name: entry.name.clone(),
        file: file.to_path_buf(),
        reason: Box::new(reason),
    })
}

/// The state of every entry's cached file (nothing is downloaded), trusting the sidecars where
/// they still vouch for a file (see [`Cache::check`]).
pub fn verify_all(manifest: &Manifest, opts: &FetchOptions) -> Vec<(String, CacheState)> {
    states(manifest, opts, Cache::check)
}

/// The state of every entry's cached file, each rehashed whatever its sidecar says (what `zoo
/// weights verify` runs); leftovers of interrupted runs are cleaned first.
pub fn rehash_all(manifest: &Manifest, opts: &FetchOptions) -> Vec<(String, CacheState)> {
    let _ = opts.cache.clean_stale();
    states(manifest, opts, Cache::recheck)
}

fn states(
    manifest: &Manifest,
    opts: &FetchOptions,
    check: fn(&Cache, &WeightsEntry) -> io::Result<CacheState>,
) -> Vec<(String, CacheState)> {
    manifest
        .entries
        .iter()
        .map(|e| {
            let state = check(&opts.cache, e)
                .unwrap_or_else(|err| CacheState::Unreadable { path: opts.cache.path_of(e), error: err.to_string() });
            (e.name.clone(), state)
        })
        .collect()
}

fn stream_algorithm(entry: &WeightsEntry) -> Algorithm {
    entry.expected_digest().map_or(Algorithm::Sha256, |x| x.algorithm)
}

fn local_io(what: &Path) -> impl FnOnce(io::Error) -> SourceError {
    let what = what.display().to_string();
    move |source| SourceError::Io { what, source }
}

/// Produces the verified file from a local source (a copy, or an extraction when `archive`).
fn install_local(src: &Path, archive: bool, entry: &WeightsEntry, opts: &FetchOptions) -> Result<PathBuf, SourceError> {
    if !src.is_file() {
        return Err(SourceError::MissingLocal { path: src.to_path_buf() });
    }
    let cache = &opts.cache;
    fs::create_dir_all(cache.dir()).map_err(local_io(cache.dir()))?;
    let part = cache.with_suffix(entry, "part");
    let algorithm = stream_algorithm(entry);
    let digest = if archive {
        extract_member(src, entry, &part, algorithm)?
    } else {
        let mut hasher = Hasher::new(algorithm);
        let copied = (|| {
            let mut input = File::open(src)?;
            let mut out = File::create(&part)?;
            copy_hashing(&mut input, &mut out, &mut hasher, &Bar::hidden())?;
            out.sync_all()
        })();
        if let Err(e) = copied {
            let _ = fs::remove_file(&part);
            return Err(SourceError::Io { what: format!("copying {}", src.display()), source: e });
        }
        hasher.finish_hex()
    };
    finish(&part, &digest, algorithm, &src.display().to_string(), entry, cache)
}

/// Checks the candidate file's digest (and exact size), then renames it into place and writes
/// the sidecar; a mismatching candidate is deleted.
fn finish(
    candidate: &Path,
    digest: &str,
    algorithm: Algorithm,
    what: &str,
    entry: &WeightsEntry,
    cache: &Cache,
) -> Result<PathBuf, SourceError> {
    let reject = |e: SourceError| {
        let _ = fs::remove_file(candidate);
        Err(e)
    };
    if let Some(expected) = entry.expected_digest() {
        if !expected.matches(digest) {
            return reject(SourceError::DigestMismatch {
                what: format!("{} from {what}", entry.file_name()),
                expected: expected.to_string(),
                actual: format!("{algorithm} {digest}"),
            });
        }
    }
    let size = fs::metadata(candidate).map_err(local_io(candidate))?.len();
    if let Some(expected) = entry.exact_size() {
        if size != expected {
            return reject(SourceError::SizeMismatch {
                what: format!("{} from {what}", entry.file_name()),
                expected,
                actual: size,
            });
        }
    }
    let dest = cache.path_of(entry);
    fs::rename(candidate, &dest).map_err(local_io(&dest))?;
    cache
        .write_sidecar(entry, algorithm, digest, entry.is_verifiable())
        .map_err(local_io(&cache.sidecar_path(entry)))?;
    Ok(dest)
}

fn copy_hashing(input: &mut impl Read, out: &mut impl Write, hasher: &mut Hasher, pb: &Bar) -> io::Result<u64> {
    let mut buf = vec![0u8; 1 << 16];
    let mut total = 0u64;
    loop {
        let n = match input.read(&mut buf) {
            Ok(0) => return Ok(total),
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        out.write_all(&buf[..n])?;
        hasher.update(&buf[..n]);
        pb.inc(n as u64);
        total += n as u64;
    }
}

fn zip_has_member(path: &Path, member: &str) -> io::Result<bool> {
    let mut magic = [0u8; 4];
    let mut f = File::open(path)?;
    if f.read(&mut magic)? < 4 || &magic != b"PK\x03\x04" {
        return Ok(false);
    }
    let archive = zip::ZipArchive::new(File::open(path)?).map_err(io::Error::other)?;
    let found = archive.file_names().any(|n| n == member);
    Ok(found)
}

/// Extracts the entry's member from a zip archive into `out`, hashing it; returns the digest.
/// pytorchcv archives hold a single `.pth`: it is taken even if its name differs.
fn extract_member(
    zip_path: &Path,
    entry: &WeightsEntry,
    out: &Path,
    algorithm: Algorithm,
) -> Result<String, SourceError> {
    let what = zip_path.display().to_string();
    let member = entry.archive_member().unwrap_or_default();
    let archive_err = |message: String| SourceError::Archive { what: what.clone(), message };
    let file = File::open(zip_path).map_err(local_io(zip_path))?;
    let mut archive = zip::ZipArchive::new(file).map_err(|e| archive_err(format!("not a zip archive: {e}")))?;
    let names: Vec<String> = archive.file_names().map(str::to_string).collect();
    let chosen = if names.contains(&member) {
        member.clone()
    } else {
        let pths: Vec<&String> = names.iter().filter(|n| n.ends_with(".pth")).collect();
        match pths.as_slice() {
            [only] => (*only).clone(),
            _ => return Err(archive_err(format!("has no member `{member}` (it holds: {})", names.join(", ")))),
        }
    };
    let mut reader = archive.by_name(&chosen).map_err(|e| archive_err(format!("cannot read `{chosen}`: {e}")))?;
    let mut hasher = Hasher::new(algorithm);
    let written = (|| {
        let mut dest = File::create(out)?;
        copy_hashing(&mut reader, &mut dest, &mut hasher, &Bar::hidden())?;
        dest.sync_all()
    })();
    if let Err(e) = written {
        let _ = fs::remove_file(out);
        return Err(archive_err(format!("extracting `{chosen}`: {e}")));
    }
    Ok(hasher.finish_hex())
}

#[cfg(feature = "download")]
mod http;
#[cfg(feature = "download")]
use http::fetch_http;

/// Without the `download` feature no URL is fetched: the file must be in a cache already (zoo's,
/// torch.hub's, Hugging Face's), imported, or given as a local path.
#[cfg(not(feature = "download"))]
fn fetch_http(url: &str, _archive: bool, entry: &WeightsEntry, opts: &FetchOptions) -> Result<PathBuf, SourceError> {
    Err(SourceError::Io {
        what: format!("fetching {url}"),
        source: io::Error::other(format!(
            "this zoo library was built without the `download` feature: download {} with the zoo command, \
             or put it at {}",
            entry.file_name(),
            opts.cache.path_of(entry).display()
        )),
    })
}
