//! Output files that appear whole or not at all: written under a hidden name of their own
//! beside the user's path (`.NAME.XXXXXX.partial`, which no file of the user's has), then renamed
//! onto it. An interrupted or failed run leaves the previous file as it was.
use anyhow::{bail, Context, Result};
use std::path::Path;
use tempfile::NamedTempFile;

/// Refuses `output` when its folder does not exist (before any work is done).
pub fn check_folder(output: &Path) -> Result<()> {
    let folder = output.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new("."));
    if !folder.is_dir() {
        bail!("--output {}: the folder {} does not exist", output.display(), folder.display());
    }
    Ok(())
}

/// A new empty file in `path`'s folder under a hidden unique name, removed when dropped unless
/// [`persist`]ed.
pub fn beside(path: &Path) -> Result<NamedTempFile> {
    check_folder(path)?;
    let folder = path.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new("."));
    let name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    let prefix = format!(".{name}.");
    let mut builder = tempfile::Builder::new();
    builder.prefix(&prefix).suffix(".partial");
    // The mode `File::create` gives (0666 less the umask), not a temporary file's 0600.
    #[cfg(unix)]
    builder.permissions(std::os::unix::fs::PermissionsExt::from_mode(0o666));
    builder
        .tempfile_in(folder)
        .with_context(|| format!("cannot write in {} (for {})", folder.display(), path.display()))
}

/// Renames `tmp` onto `path` (replacing what was there).
pub fn persist(tmp: NamedTempFile, path: &Path) -> Result<()> {
    tmp.persist(path).map_err(|e| e.error).with_context(|| format!("writing {}", path.display()))?;
    Ok(())
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
}
