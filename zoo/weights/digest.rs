//! Content digests: the hash algorithms the manifest names, incremental hashing while bytes stream
//! past, and the comparison of a computed digest with what a source published (full or prefix).
use std::fmt;
use std::fs::File;
use std::io::{self, Read};
use std::path::Path;

use sha1::Sha1;
use sha2::{Digest as _, Sha256};

/// A hash function a publisher used.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Algorithm {
    Sha256,
    Sha1,
}

impl Algorithm {
    /// Lowercase name, as written in the manifest and the sidecar files.
    pub fn name(self) -> &'static str {
        match self {
            Algorithm::Sha256 => "sha256",
            Algorithm::Sha1 => "sha1",
        }
    }

    /// Length of a full digest in hex digits.
    pub fn hex_len(self) -> usize {
        match self {
            Algorithm::Sha256 => 64,
            Algorithm::Sha1 => 40,
        }
    }
}

impl fmt::Display for Algorithm {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// An incremental hasher over one [`Algorithm`].
#[derive(Clone)]
pub enum Hasher {
    Sha256(Sha256),
    Sha1(Sha1),
}

impl Hasher {
    /// A fresh hasher.
    pub fn new(algorithm: Algorithm) -> Self {
        match algorithm {
            Algorithm::Sha256 => Hasher::Sha256(Sha256::new()),
            Algorithm::Sha1 => Hasher::Sha1(Sha1::new()),
        }
    }

    /// Feeds bytes.
    pub fn update(&mut self, bytes: &[u8]) {
        match self {
            Hasher::Sha256(h) => h.update(bytes),
            Hasher::Sha1(h) => h.update(bytes),
        }
    }

    /// The digest of everything fed so far, as lowercase hex.
    pub fn finish_hex(self) -> String {
        match self {
            Hasher::Sha256(h) => hex::encode(h.finalize()),
            Hasher::Sha1(h) => hex::encode(h.finalize()),
        }
    }
}

/// Feeds everything `reader` yields into `hasher`; returns the number of bytes read.
pub fn hash_reader(reader: &mut impl Read, hasher: &mut Hasher) -> io::Result<u64> {
    let mut buf = vec![0u8; 1 << 16];
    let mut total = 0u64;
    loop {
        let n = match reader.read(&mut buf) {
            Ok(0) => return Ok(total),
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        hasher.update(&buf[..n]);
        total += n as u64;
    }
}

/// The full digest of a file, as lowercase hex.
pub fn hash_file(path: &Path, algorithm: Algorithm) -> io::Result<String> {
    let mut hasher = Hasher::new(algorithm);
    hash_reader(&mut File::open(path)?, &mut hasher)?;
    Ok(hasher.finish_hex())
}

/// What a source published about a file's content: a full digest or the prefix of one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Expected {
    /// The hash function.
    pub algorithm: Algorithm,
    /// Lowercase hex: the full digest, or its leading digits when `prefix` is set.
    pub hex: String,
    /// Whether `hex` is only the leading part of the digest (torch.hub's file-name convention).
    pub prefix: bool,
}

impl Expected {
    /// Whether a full digest (lowercase hex, same algorithm) satisfies this expectation.
    pub fn matches(&self, actual_hex: &str) -> bool {
        let actual = actual_hex.to_ascii_lowercase();
        if self.prefix {
            actual.starts_with(&self.hex)
        } else {
            actual == self.hex
        }
    }
}

impl fmt::Display for Expected {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.prefix {
            write!(f, "{} {}… (published prefix)", self.algorithm, self.hex)
        } else {
            write!(f, "{} {}", self.algorithm, self.hex)
        }
    }
}
