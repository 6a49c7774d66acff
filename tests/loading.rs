//! The one loading path, through the `zoo` binary as users run it: checkpoints no manifest entry
//! knows load as what they are (no other file's key rules, the classic eval transform, the
//! builder without weights) and give torchvision's / timm's outputs on the same PNG images
//! (tests/py/loading_reference.py); files are identified by digest (a file given to the wrong
//! architecture is refused with the entry it is), imported by digest, and found offline in the
//! torch.hub and Hugging Face caches; the preprocessing flags override what was identified; and
//! `Model::load_file` / `Model::from_file` give the CLI's model.
mod common;

use sha2::Digest as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::OnceLock;
use tch::{Device, Tensor};
use zoo::models::Model;

const TIMM: &[(&str, &str)] =
    &[("timm_inception_v4", "inception_v4"), ("timm_inception_resnet_v2", "inception_resnet_v2")];

/// The reference folder, generated once for every model of this file in one Python process.
fn refs() -> &'static Path {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        let dir = common::fixtures("loading");
        let mut args = vec![dir.to_str().unwrap().to_string(), "tiny".into()];
        args.extend(TORCHVISION.iter().map(|s| s.to_string()));
        args.extend(TIMM.iter().map(|(s, _)| s.to_string()));
        common::run_python("loading_reference.py", &args.iter().map(String::as_str).collect::<Vec<_>>());
        dir
    })
}

fn images(side: u32) -> Vec<PathBuf> {
    (0..2).map(|i| refs().join("images").join(format!("s{side}_{i}.png"))).collect()
}

fn io(name: &str) -> zoo::checkpoint::StateDict {
    zoo::checkpoint::read(&refs().join(name).join("io.safetensors")).unwrap()
}

/// A zoo home and empty torch.hub / Hugging Face caches, all inside one temporary folder.
struct Home {
    dir: tempfile::TempDir,
}

impl Home {
    fn new() -> Self {
        Home { dir: tempfile::tempdir().unwrap() }
    }
    fn zoo(&self) -> PathBuf {
        self.dir.path().join("zoo")
    }
    fn torch_hub(&self) -> PathBuf {
        self.dir.path().join("torch/hub/checkpoints")
    }
    fn hf_hub(&self) -> PathBuf {
        self.dir.path().join("hf/hub")
    }
    /// `zoo ARGS` offline with this home and these caches.
    fn run(&self, args: &[&str]) -> Output {
        self.run_env(args, &[("ZOO_OFFLINE", "1")])
    }
    fn run_env(&self, args: &[&str], env: &[(&str, &str)]) -> Output {
        let mut c = Command::new(env!("CARGO_BIN_EXE_zoo"));
        c.args(args)
            .env("ZOO_HOME", self.zoo())
            .env("TORCH_HOME", self.dir.path().join("torch"))
            .env("HF_HOME", self.dir.path().join("hf"))
            .env_remove("HF_HUB_CACHE")
            .env_remove("ZOO_OFFLINE")
            .env_remove("HF_HUB_OFFLINE");
        for (k, v) in env {
            c.env(k, v);
        }
        c.output().unwrap()
    }
    /// Writes `$ZOO_HOME/manifest.toml` with the test entries.
    fn manifest(&self, text: &str) {
        std::fs::create_dir_all(self.zoo()).unwrap();
        std::fs::write(self.zoo().join("manifest.toml"), text).unwrap();
    }
}

fn ok(out: &Output) -> String {
    let err = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(out.status.success(), "zoo failed:\n{}\n{err}", String::from_utf8_lossy(&out.stdout));
    err
}

fn failed(out: &Output) -> String {
    assert!(!out.status.success(), "zoo should have failed:\n{}", String::from_utf8_lossy(&out.stdout));
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// The logits the CLI computes: `zoo features ARCH --weights FILE --layer HEAD` (the head's
/// output), plus the stderr notice.
fn cli_logits(home: &Home, arch: &str, file: &Path, imgs: &[PathBuf], extra: &[&str]) -> (Tensor, String) {
    let out_file = home.dir.path().join(format!("{arch}-logits.safetensors"));
    let head = zoo::models::find(arch).unwrap().head.trim_end_matches('.');
    let mut args = vec!["features", arch, "--weights", file.to_str().unwrap(), "--layer", head, "--device", "cpu"];
    args.extend(["--output", out_file.to_str().unwrap()]);
    args.extend(extra);
    args.extend(imgs.iter().map(|p| p.to_str().unwrap()));
    let err = ok(&home.run(&args));
    let sd = zoo::checkpoint::read(&out_file).unwrap();
    (sd.get("features").unwrap().shallow_clone(), err)
}

fn notice(stderr: &str) -> &str {
    stderr.lines().find(|l| l.starts_with("zoo: ") && l.contains("preprocessing")).unwrap_or("")
}

/// A torchvision file in the legacy format, unknown to the manifest, through `--weights`.
fn check_torchvision(name: &str) {
    let home = Home::new();
    let file = refs().join(name).join("weights.pth");
    let (logits, err) = cli_logits(&home, name, &file, &images(256), &[]);
    let line = notice(&err);
    assert!(line.contains("not a known file"), "{name}: {err}");
    assert!(line.contains(&format!("{name}'s classic eval transform")), "{name}: {line}");
    assert!(line.contains("resize 256, crop 224, bilinear, mean [0.485, 0.456, 0.406]"), "{name}: {line}");
    if name == "googlenet" {
        assert!(line.contains("transform_input off"), "{line}");
    }
    let io = io(name);
    common::assert_parity(&format!("{name} --weights (legacy file)"), &logits, io.get("logits").unwrap());
    assert_eq!(logits.argmax(-1, false), io.get("logits").unwrap().argmax(-1, false), "{name}: top-1 differs");
}

/// One test per torchvision classifier below, and the list the references are made for, from
/// one list.
macro_rules! torchvision_parity {
    ($($name:ident),* $(,)?) => {
        const TORCHVISION: &[&str] = &[$(stringify!($name)),*];
        $(
            #[test]
            fn $name() {
                check_torchvision(stringify!($name));
            }
        )*
    };
}

// torchvision classifiers whose default entry uses another transform or builder options than
// weights nothing describes (resnet50's V2 weights resize to 232; GoogLeNet's transform_input),
// each family's layouts: plain, wide and grouped bottlenecks (identified by shape, not key
// names), inverted residuals and channel shuffles. ResNet-101/152, MobileNet v2 and ShuffleNet
// v2 x2.0 load the same way; their legacy files are checked by tests/parity_torchvision*.rs.
torchvision_parity!(
    resnet50,
    wide_resnet50_2,
    wide_resnet101_2,
    resnext50_32x4d,
    resnext101_32x8d,
    resnext101_64x4d,
    mobilenet_v3_large,
    shufflenet_v2_x1_5,
    googlenet,
);

/// timm's Inception v4 / Inception-ResNet v2 state_dicts: 1000 classes (no Cadene row dropped),
/// ImageNet's labels, timm's logits.
fn check_timm(reference: &str, arch: &str) {
    let home = Home::new();
    let file = refs().join(reference).join("weights.pth");
    let (logits, err) = cli_logits(&home, arch, &file, &images(342), &[]);
    let line = notice(&err);
    assert!(line.contains("not a known file") && line.contains("1000 classes"), "{arch}: {line}");
    assert!(line.contains("resize 342, crop 299, bilinear, mean [0.5, 0.5, 0.5]"), "{arch}: {line}");
    common::assert_parity(&format!("{arch} (timm's layout)"), &logits, io(reference).get("logits").unwrap());

    let img = images(342);
    let out = home.run(
        &["classify", arch, "--weights", file.to_str().unwrap(), "--top-k", "1000", "--format", "jsonl"]
            .into_iter()
            .chain([img[0].to_str().unwrap()])
            .collect::<Vec<_>>(),
    );
    ok(&out);
    let row: serde_json::Value = serde_json::from_slice(out.stdout.split(|b| *b == b'\n').next().unwrap()).unwrap();
    let top = row["top"].as_array().unwrap();
    assert_eq!(top.len(), 1000, "{arch}: every class of a 1000-class head");
    let want = io(reference).get("logits").unwrap().get(0).argmax(-1, false).int64_value(&[]);
    assert_eq!(top[0]["index"].as_i64().unwrap(), want, "{arch}: top-1 differs from timm");
    let labels = zoo::weights::imagenet_classes();
    for t in top {
        assert_eq!(t["label"].as_str().unwrap(), labels[t["index"].as_u64().unwrap() as usize], "{arch}");
    }
}

#[test]
fn timm_inception_v4() {
    check_timm(TIMM[0].0, TIMM[0].1);
}

#[test]
fn timm_inception_resnet_v2() {
    check_timm(TIMM[1].0, TIMM[1].1);
}

/// Each override flag changes what the notice says, and the numbers follow torchvision's
/// transform with the same settings.
#[test]
fn preprocessing_overrides() {
    let home = Home::new();
    let file = refs().join("resnet50/weights.pth");
    let io = io("resnet50");
    let (half, err) = cli_logits(&home, "resnet50", &file, &images(256), &["--mean", "0.5", "--std", "0.5,0.5,0.5"]);
    assert!(notice(&err).contains("mean [0.5, 0.5, 0.5], std [0.5, 0.5, 0.5]"), "{err}");
    assert!(notice(&err).contains("--mean, --std given"), "{err}");
    common::assert_parity("resnet50 --mean/--std", &half, io.get("logits_half").unwrap());
    let (crop, err) = cli_logits(&home, "resnet50", &file, &images(256), &["--crop", "192"]);
    assert!(notice(&err).contains("crop 192,"), "{err}");
    common::assert_parity("resnet50 --crop 192", &crop, io.get("logits_crop192").unwrap());

    let img = images(256)[0].to_str().unwrap().to_string();
    let classify = |extra: &[&str]| {
        let mut args = vec!["classify", "resnet50", "--weights", file.to_str().unwrap(), "--device", "cpu"];
        args.extend(extra);
        args.push(&img);
        notice(&ok(&home.run(&args))).to_string()
    };
    let line = classify(&["--preprocess", "resnet50.tv2_in1k"]);
    assert!(line.contains("resize 232, crop 224") && line.contains("resnet50.tv2_in1k's, from --preprocess"), "{line}");
    let line = classify(&["--resize", "288", "--interpolation", "bicubic"]);
    assert!(
        line.contains("resize 288, crop 224, bicubic") && line.contains("--resize, --interpolation given"),
        "{line}"
    );
    let err = failed(&home.run(&["classify", "resnet50", "--weights", file.to_str().unwrap(), "--std", "0", &img]));
    assert!(err.contains("std non-zero"), "an impossible override is refused: {err}");
}

/// The library's `Model::load_file` (into the registry model) and `Model::from_file` give the
/// CLI's model for torchvision's GoogLeNet state_dict, auxiliary heads included.
#[test]
fn library_and_cli_load_the_same_model() {
    let file = refs().join("googlenet/weights.pth");
    let io = io("googlenet");
    let mut plain = Model::new("googlenet", zoo::models::BuildConfig::default(), Device::Cpu).unwrap();
    plain.load_file(&file).expect("torchvision's googlenet state_dict (with aux1/aux2) loads");
    let from_file = Model::from_file("googlenet", &file, Device::Cpu).unwrap();
    let (a, b) = (plain.vs.variables(), from_file.vs.variables());
    assert_eq!(a.len(), b.len());
    for (k, t) in &a {
        assert!(t.equal(&b[k]), "{k} differs between load_file and from_file");
    }
    let input = io.get("input").unwrap();
    let lib = from_file.predict(input).unwrap();
    common::assert_parity("googlenet Model::from_file", &lib, io.get("logits").unwrap());
    let home = Home::new();
    let (cli, _) = cli_logits(&home, "googlenet", &file, &images(256), &[]);
    let p = common::compare(&cli, &lib);
    assert!(
        p.full <= common::PARITY_TOL / 10.0 && p.varying <= common::PARITY_TOL / 10.0,
        "CLI and library differ: {p:?}"
    );
}

fn sha256_of(path: &Path) -> String {
    hex::encode(sha2::Sha256::digest(std::fs::read(path).unwrap()))
}

/// Test entries: `test_tiny` is the tiny file by digest (under a torch.hub-style name),
/// `test_hf` the same network as safetensors on a Hugging Face URL, with no published digest.
fn tiny_manifest(home: &Home) -> (PathBuf, PathBuf) {
    let tiny = refs().join("tiny/weights.pth");
    let st = refs().join("tiny/model.safetensors");
    let entry = |name: &str, url: &str, format: &str, digest: &str| {
        format!(
            "[[weights]]\nname = \"{name}\"\nurls = [\"{url}\"]\nformat = \"{format}\"\n{digest}\nnum_classes = 1000\n\
             categories = \"imagenet1k\"\npreprocess = {{ resize = 230, crop = [224, 224], mean = [0.485, 0.456, 0.406], \
             std = [0.229, 0.224, 0.225] }}\nlicense = \"test\"\norigin = \"tests/loading.rs\"\n\n"
        )
    };
    let text = entry(
        "mobilenet_v3_small.test_tiny",
        "https://example.invalid/models/tiny-0123abcd.pth",
        "torch-legacy",
        &format!("digest_kind = \"sha256\"\ndigest = \"{}\"", sha256_of(&tiny)),
    ) + &entry(
        "mobilenet_v3_small.test_hf",
        "https://huggingface.co/timm/zoo_test_tiny/resolve/main/model.safetensors",
        "safetensors",
        "digest_kind = \"none-published\"",
    );
    home.manifest(&text);
    (tiny, st)
}

#[test]
fn a_file_is_identified_by_digest_and_refused_by_the_wrong_architecture() {
    let home = Home::new();
    let (tiny, _) = tiny_manifest(&home);
    let img = images(256)[0].to_str().unwrap().to_string();
    let t = tiny.to_str().unwrap();
    let err = ok(&home.run(&["classify", "mobilenet_v3_small", "--weights", t, &img]));
    let line = notice(&err);
    assert!(line.contains("mobilenet_v3_small.test_tiny (its sha256 matches)") && line.contains("resize 230"), "{err}");
    let err = failed(&home.run(&["classify", "mobilenet_v3_large", "--weights", t, &img]));
    assert!(err.contains("is mobilenet_v3_small.test_tiny") && err.contains("run it as `mobilenet_v3_small`"), "{err}");
    let err = failed(&home.run(&["classify", "mobilenet_v3_small.tv_in1k", "--weights", t, &img]));
    assert!(err.contains("is mobilenet_v3_small.test_tiny") && err.contains("not mobilenet_v3_small.tv_in1k"), "{err}");
}

#[test]
fn import_identifies_files_by_digest() {
    let home = Home::new();
    let (tiny, _) = tiny_manifest(&home);
    let src = home.dir.path().join("downloads");
    std::fs::create_dir_all(&src).unwrap();
    std::fs::copy(&tiny, src.join("some-name.pth")).unwrap();
    std::fs::write(src.join("notes.txt"), "not weights").unwrap();
    let out = home.run(&["weights", "import", src.to_str().unwrap()]);
    ok(&out);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains("as mobilenet_v3_small.test_tiny (digest)"), "{stdout}");
    assert!(stdout.contains("skipped") && stdout.contains("notes.txt"), "{stdout}");
    assert!(home.zoo().join("weights/tiny-0123abcd.pth").is_file());
    let img = images(256)[0].to_str().unwrap().to_string();
    ok(&home.run(&["classify", "mobilenet_v3_small.test_tiny", &img]));

    // A wrong --as names the copy it removed, and the source stays.
    let out = home.run(&["weights", "import", tiny.to_str().unwrap(), "--as", "mobilenet_v3_small.tv_in1k"]);
    let err = failed(&out);
    assert!(err.contains("the unverified copy in the cache was removed (the source is untouched)"), "{err}");
    assert!(tiny.is_file());
    let err = failed(&home.run(&["weights", "import", src.join("notes.txt").to_str().unwrap()]));
    assert!(err.contains("nothing imported") && err.contains("--weights FILE"), "{err}");
}

#[test]
fn a_torch_hub_cache_file_is_found_offline_and_used_in_place() {
    let home = Home::new();
    let (tiny, _) = tiny_manifest(&home);
    let img = images(256)[0].to_str().unwrap().to_string();
    let err = failed(&home.run(&["classify", "mobilenet_v3_small.test_tiny", &img]));
    let hub_file = home.torch_hub().join("tiny-0123abcd.pth");
    assert!(err.contains(&home.zoo().join("weights").display().to_string()), "the zoo cache is listed: {err}");
    assert!(err.contains(&hub_file.display().to_string()) && err.contains("torch.hub cache"), "{err}");
    std::fs::create_dir_all(home.torch_hub()).unwrap();
    std::fs::copy(&tiny, &hub_file).unwrap();
    let out = home.run(&["classify", "mobilenet_v3_small.test_tiny", "--format", "jsonl", &img]);
    let err = ok(&out);
    assert!(err.contains("from the torch.hub cache in place"), "{err}");
    assert!(!home.zoo().join("weights/tiny-0123abcd.pth").exists(), "no copy in the zoo cache");
    assert!(home.zoo().join("weights/external/mobilenet_v3_small.test_tiny.json").is_file(), "a stamp");
    let row: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let want = io("tiny").get("logits").unwrap().get(0).argmax(-1, false).int64_value(&[]);
    assert_eq!(row["top"][0]["index"].as_i64().unwrap(), want, "top-1 of torchvision on the same image");
    // The stamp spares rehashing; a changed file is not used.
    let again = ok(&home.run(&["classify", "mobilenet_v3_small.test_tiny", &img]));
    assert!(!again.contains("from the torch.hub cache in place"), "verified once: {again}");
    let mut bytes = std::fs::read(&hub_file).unwrap();
    bytes[100] ^= 1;
    std::fs::write(&hub_file, bytes).unwrap();
    let err = failed(&home.run(&["classify", "mobilenet_v3_small.test_tiny", &img]));
    assert!(err.contains("is not sha256"), "a modified file is refused: {err}");
}

#[test]
fn a_hugging_face_cache_snapshot_is_found_offline() {
    let home = Home::new();
    let (_, st) = tiny_manifest(&home);
    let img = images(256)[0].to_str().unwrap().to_string();
    let offline = [("HF_HUB_OFFLINE", "1")];
    let err = failed(&home.run_env(&["classify", "mobilenet_v3_small.test_hf", &img], &offline));
    let repo = home.hf_hub().join("models--timm--zoo_test_tiny");
    assert!(err.contains("offline") && err.contains("Hugging Face cache"), "{err}");
    assert!(err.contains(&repo.join("refs/main").display().to_string()), "{err}");
    // huggingface_hub's layout: refs/main names the snapshot, whose file links to its blob.
    let sha = sha256_of(&st);
    let rev = "0123456789abcdef0123456789abcdef01234567";
    std::fs::create_dir_all(repo.join("blobs")).unwrap();
    std::fs::create_dir_all(repo.join("refs")).unwrap();
    std::fs::create_dir_all(repo.join("snapshots").join(rev)).unwrap();
    std::fs::copy(&st, repo.join("blobs").join(&sha)).unwrap();
    std::fs::write(repo.join("refs/main"), rev).unwrap();
    let link = repo.join("snapshots").join(rev).join("model.safetensors");
    std::os::unix::fs::symlink(format!("../../blobs/{sha}"), &link).unwrap();
    let out = home.run_env(&["classify", "mobilenet_v3_small.test_hf", "--format", "jsonl", &img], &offline);
    let err = ok(&out);
    assert!(err.contains("from the Hugging Face cache in place"), "{err}");
    assert!(!home.zoo().join("weights/mobilenet_v3_small.test_hf.safetensors").exists(), "no copy");
    let row: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let want = io("tiny").get("logits").unwrap().get(0).argmax(-1, false).int64_value(&[]);
    assert_eq!(row["top"][0]["index"].as_i64().unwrap(), want);
}

/// The head's variable path is data on the registry row: it is what every model calls its
/// classifier.
#[test]
fn registry_heads_are_the_classifiers() {
    let _g = tch::no_grad_guard();
    for spec in zoo::models::registry() {
        let m = zoo::nn::without_init(|| Model::new(spec.name, spec.default_config(), Device::Cpu)).unwrap();
        assert_eq!(m.net.classifier_prefixes()[0], spec.head, "{}", spec.name);
        let w = &m.vs.variables()[&format!("{}weight", spec.head)];
        assert_eq!(w.size()[0], spec.num_classes, "{}: the head's rows are the classes", spec.name);
    }
}
