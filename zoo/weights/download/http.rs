//! The HTTP source of [`super::fetch`] (the `download` feature): resumed, retried GETs with
//! timeouts, the body hashed as it arrives.
use super::*;
use crate::weights::digest::hash_reader;
use reqwest::blocking::Client;
use reqwest::header::{CONTENT_RANGE, RANGE};

/// Outcome of one HTTP attempt that did not deliver the body.
enum Attempt {
    /// Worth another try (after backoff).
    Retry(String),
    /// No point retrying this source.
    Fatal(SourceError),
}

fn is_loopback(url: &str) -> bool {
    reqwest::Url::parse(url)
        .ok()
        .and_then(|u| u.host_str().map(str::to_string))
        .is_some_and(|h| h == "localhost" || h.starts_with("127.") || h == "[::1]" || h == "::1")
}

fn client_for(url: &str, opts: &FetchOptions) -> Result<Client, SourceError> {
    let mut builder = Client::builder()
        .connect_timeout(opts.connect_timeout)
        .timeout(opts.read_timeout)
        .user_agent(concat!("zoo/", env!("CARGO_PKG_VERSION")));
    if is_loopback(url) {
        builder = builder.no_proxy();
    }
    builder
        .build()
        .map_err(|e| SourceError::Io { what: "building the HTTP client".into(), source: io::Error::other(e) })
}

/// Downloads `url` (resuming and retrying) and produces the verified file.
pub(super) fn fetch_http(
    url: &str,
    archive: bool,
    entry: &WeightsEntry,
    opts: &FetchOptions,
) -> Result<PathBuf, SourceError> {
    let client = client_for(url, opts)?;
    let cache = &opts.cache;
    // Archive downloads get their own partial file: a mirror's bare file must never be resumed
    // into an archive, or the other way round.
    let part = cache.with_suffix(entry, if archive { "download.part" } else { "part" });
    let algorithm = stream_algorithm(entry);
    let attempts = opts.attempts.max(1);
    let mut attempt = 0;
    let digest = loop {
        attempt += 1;
        match http_attempt(&client, url, &part, algorithm, entry, opts) {
            Ok(d) => break d,
            Err(Attempt::Fatal(e)) => return Err(e),
            Err(Attempt::Retry(last)) => {
                if attempt >= attempts {
                    return Err(SourceError::Exhausted { url: url.to_string(), attempts: attempt, last });
                }
                let wait = backoff(opts, attempt);
                eprintln!("{url}: {last}; retrying in {wait:.1?} (attempt {} of {attempts})", attempt + 1);
                std::thread::sleep(wait);
            }
        }
    };
    if archive {
        let out = cache.with_suffix(entry, "part");
        let extracted = extract_member(&part, entry, &out, algorithm);
        let _ = fs::remove_file(&part);
        let digest = extracted?;
        finish(&out, &digest, algorithm, url, entry, cache)
    } else {
        finish(&part, &digest, algorithm, url, entry, cache)
    }
}

fn backoff(opts: &FetchOptions, attempt: u32) -> Duration {
    let factor = 1u32 << (attempt - 1).min(16);
    opts.backoff.saturating_mul(factor).min(opts.max_backoff)
}

fn describe(e: &reqwest::Error, opts: &FetchOptions) -> String {
    let mut s = if e.is_timeout() {
        format!("timed out (nothing received for {:.1?})", opts.read_timeout)
    } else if e.is_connect() {
        "cannot connect".to_string()
    } else {
        "request failed".to_string()
    };
    let mut source = std::error::Error::source(e);
    while let Some(inner) = source {
        s.push_str(&format!(": {inner}"));
        source = inner.source();
    }
    s
}

/// The resolver's message when `e` says a host name does not resolve. hyper's connector reports
/// every resolution failure as "dns error" with the resolver's error below it. None is retried:
/// the system resolver has already retried its servers (resolv.conf `attempts`, `timeout`)
/// before answering even a "temporary failure", so another round only multiplies the wait.
fn unresolved(e: &reqwest::Error) -> Option<String> {
    let mut chain = Vec::new();
    let mut source = std::error::Error::source(e);
    while let Some(inner) = source {
        chain.push(inner.to_string());
        source = inner.source();
    }
    let at = chain.iter().position(|m| m == "dns error")?;
    Some(chain.get(at + 1).cloned().unwrap_or_else(|| "no address found".to_string()))
}

/// One GET of `url` into `part`, resuming from what `part` already holds. Returns the digest of
/// the complete file.
fn http_attempt(
    client: &Client,
    url: &str,
    part: &Path,
    algorithm: Algorithm,
    entry: &WeightsEntry,
    opts: &FetchOptions,
) -> Result<String, Attempt> {
    let fatal_io = |e: io::Error| Attempt::Fatal(local_io(part)(e));
    let have = fs::metadata(part).map(|m| m.len()).unwrap_or(0);
    let mut hasher = Hasher::new(algorithm);
    if have > 0 {
        hash_reader(&mut File::open(part).map_err(fatal_io)?, &mut hasher).map_err(fatal_io)?;
    }
    let mut request = client.get(url);
    if have > 0 {
        request = request.header(RANGE, format!("bytes={have}-"));
    }
    let mut response = request.send().map_err(|e| match unresolved(&e) {
        Some(detail) => Attempt::Fatal(SourceError::Unresolved {
            url: url.to_string(),
            host: reqwest::Url::parse(url).ok().and_then(|u| u.host_str().map(str::to_string)).unwrap_or_default(),
            detail,
        }),
        None => Attempt::Retry(describe(&e, opts)),
    })?;
    let status = response.status().as_u16();
    let resumed = match status {
        206 if have > 0 => {
            let from = format!("bytes {have}-");
            let range_ok = response
                .headers()
                .get(CONTENT_RANGE)
                .and_then(|v| v.to_str().ok())
                .is_some_and(|v| v.starts_with(&from));
            if !range_ok {
                let _ = fs::remove_file(part);
                return Err(Attempt::Retry("server answered with another range than asked; restarting".into()));
            }
            true
        }
        200 => {
            if have > 0 {
                eprintln!("{url}: server ignored the range request; restarting from the beginning");
                hasher = Hasher::new(algorithm);
            }
            false
        }
        416 => {
            let _ = fs::remove_file(part);
            return Err(Attempt::Retry("range not satisfiable; restarting from the beginning".into()));
        }
        404 | 410 => return Err(Attempt::Fatal(SourceError::NotFound { url: url.to_string() })),
        408 | 429 | 500..=599 => return Err(Attempt::Retry(format!("HTTP {status}"))),
        _ => return Err(Attempt::Fatal(SourceError::Status { url: url.to_string(), status })),
    };
    let start = if resumed { have } else { 0 };
    let body_len = response.content_length();
    let mut file =
        if resumed { File::options().append(true).open(part) } else { File::create(part) }.map_err(fatal_io)?;
    let pb = Bar::bytes(body_len.map(|n| n + start), start, &entry.file_name(), opts.progress);
    let mut buf = vec![0u8; 1 << 16];
    let mut received = 0u64;
    loop {
        let n = match response.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => {
                pb.abandon();
                file.flush().map_err(fatal_io)?;
                let total = body_len.map_or_else(|| "?".to_string(), |n| (n + start).to_string());
                return Err(Attempt::Retry(format!(
                    "connection dropped after {} of {total} bytes ({e})",
                    start + received
                )));
            }
        };
        file.write_all(&buf[..n]).map_err(fatal_io)?;
        hasher.update(&buf[..n]);
        received += n as u64;
        pb.inc(n as u64);
    }
    file.sync_all().map_err(fatal_io)?;
    if let Some(len) = body_len {
        if received != len {
            pb.abandon();
            return Err(Attempt::Retry(format!("body ended after {received} of {len} bytes")));
        }
    }
    pb.finish_and_clear();
    Ok(hasher.finish_hex())
}
