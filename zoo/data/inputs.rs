//! Input paths from the command line and from folders, and refusing files that are not regular.
//!
//! Opening a FIFO blocks until a writer appears (a run hangs forever), and a character device
//! such as `/dev/zero` never ends (a run reads until the kernel kills it). So every input is
//! checked with `stat` (which follows links, so a link to a device counts as the device) before
//! anything opens it: what is not a regular file is reported per file, "not a regular file (a
//! FIFO)", without ever being opened, and the run goes on with the other files. Inside folders
//! such files are listed too, whatever their name, so they fail visibly instead of vanishing.
use anyhow::{bail, Result};
use std::fs;
use std::path::{Path, PathBuf};

/// What kind of non-regular file `meta` describes ("a FIFO", "a character device", ...).
fn kind_of(meta: &fs::Metadata) -> &'static str {
    let t = meta.file_type();
    if t.is_dir() {
        return "a folder";
    }
    #[cfg(unix)]
    {
        use std::os::unix::fs::FileTypeExt;
        if t.is_fifo() {
            return "a FIFO";
        }
        if t.is_socket() {
            return "a socket";
        }
        if t.is_char_device() {
            return "a character device";
        }
        if t.is_block_device() {
            return "a block device";
        }
    }
    "not a file"
}

/// `Err("not a regular file (a FIFO)")` when `path` exists and is (or links to) anything but a
/// regular file. Nothing is opened. A path that cannot be `stat`ed passes: whoever opens it
/// reports why (no such file, permission denied).
pub fn check_regular(path: &Path) -> Result<(), String> {
    match fs::metadata(path) {
        Ok(meta) if !meta.is_file() => {
            let via_link = fs::symlink_metadata(path).is_ok_and(|m| m.file_type().is_symlink());
            Err(format!(
                "not a regular file ({}{}): not opened; name an image file instead",
                kind_of(&meta),
                if via_link { ", through a symbolic link" } else { "" }
            ))
        }
        _ => Ok(()),
    }
}

/// The files of folder `dir` (recursively, following links, loops skipped), sorted: regular
/// files for which `wanted` holds, every non-regular file whatever its name (to be reported by
/// [`check_regular`] when used), and dangling links `wanted` would take (to be reported as
/// unreadable). Entries that cannot be read are described in the second list.
pub fn walk_folder(dir: &Path, wanted: &dyn Fn(&Path) -> bool) -> (Vec<PathBuf>, Vec<String>) {
    let (mut found, mut problems) = (Vec::new(), Vec::new());
    for entry in walkdir::WalkDir::new(dir).follow_links(true) {
        match entry {
            Ok(e) if e.file_type().is_dir() => {}
            Ok(e) if !e.file_type().is_file() || wanted(e.path()) => found.push(e.into_path()),
            Ok(_) => {}
            Err(e) if e.loop_ancestor().is_none() && e.path().is_some_and(wanted) => {
                found.push(e.path().expect("checked above").to_path_buf())
            }
            Err(e) => problems.push(e.to_string()),
        }
    }
    found.sort();
    (found, problems)
}

/// Expands files and folders into a de-duplicated list in argument order (each folder's files
/// sorted, see [`walk_folder`]); a named path is kept whatever it is, so that a missing or
/// special file is reported rather than dropped. Problems met in folders are in the second list.
pub fn collect(paths: &[PathBuf], wanted: &dyn Fn(&Path) -> bool) -> (Vec<PathBuf>, Vec<String>) {
    let (mut out, mut problems) = (Vec::new(), Vec::new());
    for p in paths {
        if p.is_dir() {
            let (files, mut errs) = walk_folder(p, wanted);
            out.extend(files);
            problems.append(&mut errs);
        } else {
            out.push(p.clone());
        }
    }
    let mut seen = std::collections::HashSet::new();
    out.retain(|p| seen.insert(p.clone()));
    (out, problems)
}

/// Whether `path`'s extension is one of `extensions` (compared case-insensitively).
pub fn has_extension(path: &Path, extensions: &[&str]) -> bool {
    path.extension().and_then(|x| x.to_str()).is_some_and(|x| extensions.iter().any(|e| e.eq_ignore_ascii_case(x)))
}

/// File extensions taken from folders (explicit file arguments are always tried).
pub const IMAGE_EXTENSIONS: &[&str] = &["jpg", "jpeg", "png", "webp", "bmp", "gif", "tif", "tiff"];

/// Parses `--shard K/N` (1-based K).
pub fn parse_shard(s: &str) -> Result<(usize, usize)> {
    let parsed = s.split_once('/').and_then(|(k, n)| Some((k.trim().parse().ok()?, n.trim().parse().ok()?)));
    match parsed {
        Some((k, n)) if n >= 1 && (1..=n).contains(&k) => Ok((k, n)),
        _ => bail!("invalid shard '{s}': use K/N with 1 <= K <= N, e.g. 2/8"),
    }
}

/// The files of one shard: a contiguous, deterministic slice, so the outputs of shards 1..N
/// concatenated in order are the output of the whole run.
pub fn shard(files: Vec<PathBuf>, k: usize, n: usize) -> Vec<PathBuf> {
    let len = files.len();
    let (start, end) = ((k - 1) * len / n, k * len / n);
    files.into_iter().skip(start).take(end - start).collect()
}

/// Expands files and folders (recursively, following symlinks, loops skipped) into a sorted,
/// de-duplicated list. Folders contribute files with an image extension and every file that is
/// not regular (FIFOs, devices: reported when prepared, never opened); a path that does not
/// exist is kept, so it is reported as a failed file rather than silently dropped.
pub fn collect_files(paths: &[PathBuf]) -> Vec<PathBuf> {
    let (files, problems) = collect(paths, &|f: &Path| has_extension(f, IMAGE_EXTENSIONS));
    for p in problems {
        eprintln!("{}", crate::text::escape_controls(&format!("zoo: skipping {p}")));
    }
    files
}

#[cfg(all(test, unix))]
mod tests {
    use super::*;

    #[test]
    fn special_files_are_refused_without_opening_and_listed_in_folders() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        fs::write(d.join("a.png"), b"x").unwrap();
        fs::write(d.join("notes.txt"), b"x").unwrap();
        let fifo = d.join("pipe.jpg");
        let status = std::process::Command::new("mkfifo").arg(&fifo).status().unwrap();
        assert!(status.success());
        std::os::unix::fs::symlink("/dev/null", d.join("null")).unwrap();
        let wanted = |p: &Path| has_extension(p, &["png", "jpg"]);
        let (files, problems) = collect(&[d.to_path_buf()], &wanted);
        let names: Vec<_> = files.iter().map(|p| p.file_name().unwrap().to_str().unwrap()).collect();
        assert_eq!(names, ["a.png", "null", "pipe.jpg"]);
        assert!(problems.is_empty(), "{problems:?}");
        // Opening the FIFO would block this test forever: the check must not open it.
        assert_eq!(
            check_regular(&fifo).unwrap_err(),
            "not a regular file (a FIFO): not opened; name an image file instead"
        );
        assert!(check_regular(&d.join("null")).unwrap_err().contains("a character device, through a symbolic link"));
        assert!(check_regular(&d.join("a.png")).is_ok());
        assert!(check_regular(&d.join("missing.png")).is_ok());
    }
}
