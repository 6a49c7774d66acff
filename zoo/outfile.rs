//! Output files that appear whole or not at all: written under a hidden name of their own
//! beside the user's path (`.NAME.PID.XXXXXX.partial`, which no file of the user's has), synced,
//! then renamed onto it. A failed run removes its file; an interrupted one (killed, Ctrl-C) leaves
//! the previous output as it was, and its hidden file is removed by the next run for that path
//! once the process that wrote it is gone.
use anyhow::{bail, Context, Result};
use std::path::Path;
use tempfile::NamedTempFile;

/// The most bytes of the output's name that go into the hidden name (which adds about 30 to it;
/// a file name has at most 255).
const NAME_BYTES: usize = 100;

/// The folder `path` is in (`.` for a bare file name).
fn folder_of(path: &Path) -> &Path {
    path.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new("."))
}

/// Refuses `output` when its folder does not exist (before any work is done).
pub fn check_folder(output: &Path) -> Result<()> {
    let folder = folder_of(output);
    if !folder.is_dir() {
        bail!("--output {}: the folder {} does not exist", output.display(), folder.display());
    }
    Ok(())
}

/// A new empty file in `path`'s folder under a hidden unique name, removed when dropped unless
/// [`persist`]ed. Hidden files an interrupted run left for the same path are removed first.
pub fn beside(path: &Path) -> Result<NamedTempFile> {
    check_folder(path)?;
    let folder = folder_of(path);
    let mut name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    if name.len() > NAME_BYTES {
        let mut end = NAME_BYTES;
        while !name.is_char_boundary(end) {
            end -= 1;
        }
        name.truncate(end);
    }
    let stem = format!(".{name}.");
    remove_stale(folder, &stem);
    let prefix = format!("{stem}{}.", std::process::id());
    let mut builder = tempfile::Builder::new();
    builder.prefix(&prefix).suffix(".partial");
    // The mode `File::create` gives (0666 less the umask), not a temporary file's 0600.
    #[cfg(unix)]
    builder.permissions(std::os::unix::fs::PermissionsExt::from_mode(0o666));
    builder
        .tempfile_in(folder)
        .with_context(|| format!("cannot write in {} (for {})", folder.display(), path.display()))
}

/// Syncs `tmp` and renames it onto `path` (replacing what was there).
pub fn persist(tmp: NamedTempFile, path: &Path) -> Result<()> {
    tmp.as_file().sync_all().with_context(|| format!("writing {}", path.display()))?;
    tmp.persist(path).map_err(|e| e.error).with_context(|| format!("writing {}", path.display()))?;
    Ok(())
}

/// Removes the files `STEM<pid>.XXXXXX.partial` in `folder` whose writer's process is gone.
fn remove_stale(folder: &Path, stem: &str) {
    let Ok(entries) = std::fs::read_dir(folder) else { return };
    for entry in entries.flatten() {
        let name = entry.file_name();
        let Some(rest) = name.to_str().and_then(|n| n.strip_prefix(stem)).and_then(|r| r.strip_suffix(".partial"))
        else {
            continue;
        };
        // `PID.XXXXXX` and nothing more: `.o.npy.5.PID.XXXXXX.partial` is another output's.
        let writer = rest
            .split_once('.')
            .filter(|(_, random)| !random.contains('.'))
            .and_then(|(pid, _)| pid.parse::<u32>().ok());
        if writer.is_some_and(|pid| !crate::weights::cache::process_alive(pid)) {
            let _ = std::fs::remove_file(entry.path());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    #[test]
    fn a_users_partial_file_is_left_alone_and_a_dropped_file_leaves_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path().join("feats.npy");
        std::fs::write(dir.path().join("feats.partial"), "mine").unwrap();
        std::fs::write(&out, "old").unwrap();
        let dropped = beside(&out).unwrap();
        drop(dropped);
        assert_eq!(std::fs::read_to_string(&out).unwrap(), "old");
        let mut tmp = beside(&out).unwrap();
        tmp.write_all(b"new").unwrap();
        persist(tmp, &out).unwrap();
        assert_eq!(std::fs::read_to_string(&out).unwrap(), "new");
        // The mode a plain `File::create` gives.
        let plain = dir.path().join("plain");
        std::fs::File::create(&plain).unwrap();
        let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions();
        assert_eq!(mode(&out), mode(&plain));
        std::fs::remove_file(&plain).unwrap();
        assert_eq!(std::fs::read_to_string(dir.path().join("feats.partial")).unwrap(), "mine");
        let names: Vec<_> = std::fs::read_dir(dir.path()).unwrap().map(|e| e.unwrap().file_name()).collect();
        assert_eq!(names.len(), 2, "{names:?}");
        let err = beside(&dir.path().join("no/such/x.npy")).unwrap_err().to_string();
        assert!(err.contains("does not exist"), "{err}");
    }

    #[test]
    fn an_interrupted_runs_file_is_removed_once_its_writer_is_gone_and_long_names_fit() {
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path().join("feats.npy");
        // No process has this id (beyond any pid_max); this process has its own.
        let dead = dir.path().join(".feats.npy.4000000000.AbCdEf.partial");
        let live = dir.path().join(format!(".feats.npy.{}.AbCdEf.partial", std::process::id()));
        let other = dir.path().join(".other.npy.4000000000.AbCdEf.partial");
        // Another output's (`feats.npy.7`), which the stem `.feats.npy.` also begins.
        let longer = dir.path().join(".feats.npy.7.4000000000.AbCdEf.partial");
        for p in [&dead, &live, &other, &longer] {
            std::fs::write(p, "rows").unwrap();
        }
        let tmp = beside(&out).unwrap();
        assert!(!dead.exists() && live.exists() && other.exists() && longer.exists());
        drop(tmp);
        let long = dir.path().join(format!("{}.npy", "é".repeat(120)));
        let mut tmp = beside(&long).unwrap();
        tmp.write_all(b"x").unwrap();
        persist(tmp, &long).unwrap();
        assert!(long.is_file());
    }
}
