//! Checkpoint reading, checked against files written by real torch (values compared exactly with
//! what torch saved, via `expected.json`), hostile files, strict loading, key rules and
//! safetensors round trips. Fixtures come from `tests/py/make_checkpoint_fixtures.py`, run once
//! with `$ZOO_PYTHON` (default `<crate>/.venv/bin/python`) into
//! `target/test-fixtures/checkpoint/` and reused while the script and the reference libraries' versions
//! are unchanged.
mod common;

use serde_json::Value as Json;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;
use tch::{nn, Device, Kind, Tensor};
use zoo::checkpoint::{self, Format, KeyRule, LoadError, LoadOptions, StateDict};

fn fixtures() -> &'static Path {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| common::generated_fixtures("checkpoint", "make_checkpoint_fixtures.py", &[]))
}

fn fixture(name: &str) -> PathBuf {
    fixtures().join(name)
}

fn expected() -> &'static Json {
    static EXPECTED: OnceLock<Json> = OnceLock::new();
    EXPECTED.get_or_init(|| serde_json::from_slice(&std::fs::read(fixture("expected.json")).unwrap()).unwrap())
}

fn kind_of(dtype: &str) -> Kind {
    match dtype {
        "float32" => Kind::Float,
        "float16" => Kind::Half,
        "bfloat16" => Kind::BFloat16,
        "float64" => Kind::Double,
        "int64" => Kind::Int64,
        "int32" => Kind::Int,
        "int16" => Kind::Int16,
        "int8" => Kind::Int8,
        "uint8" => Kind::Uint8,
        "bool" => Kind::Bool,
        other => panic!("unknown dtype {other}"),
    }
}

/// Asserts `t` has exactly the dtype, shape and values torch saved.
fn assert_tensor(name: &str, t: &Tensor, want: &Json) {
    assert_eq!(t.kind(), kind_of(want["dtype"].as_str().unwrap()), "{name}: dtype");
    let shape: Vec<i64> = want["shape"].as_array().unwrap().iter().map(|d| d.as_i64().unwrap()).collect();
    assert_eq!(t.size(), shape, "{name}: shape");
    assert!(t.is_contiguous(), "{name}: not contiguous");
    // Floats are compared bit for bit (the script records their bit patterns as integers).
    let bits = match t.kind() {
        Kind::Half | Kind::BFloat16 => t.view_dtype(Kind::Int16),
        Kind::Float => t.view_dtype(Kind::Int),
        Kind::Double => t.view_dtype(Kind::Int64),
        _ => t.shallow_clone(),
    };
    let got = Vec::<i64>::try_from(&bits.flatten(0, -1).to_kind(Kind::Int64)).unwrap();
    let want: Vec<i64> = want["values"].as_array().unwrap().iter().map(|v| v.as_i64().unwrap()).collect();
    assert_eq!(got, want, "{name}: values");
}

/// Reads fixture `file` and compares it with what torch saved (`ordered`: key order too).
fn check_fixture(file: &str, ordered: bool) -> StateDict {
    let sd = checkpoint::read(&fixture(file)).unwrap_or_else(|e| panic!("{file}: {e:#}"));
    let want = &expected()[file];
    let mut keys: Vec<&str> = want["keys"].as_array().unwrap().iter().map(|k| k.as_str().unwrap()).collect();
    let mut got: Vec<&str> = sd.keys().collect();
    if !ordered {
        keys.sort();
        got.sort();
    }
    assert_eq!(got, keys, "{file}: keys");
    for (k, t) in &sd.entries {
        assert_tensor(&format!("{file}:{k}"), t, &want["tensors"][k]);
    }
    sd
}

fn read_err(file: &str) -> String {
    match checkpoint::read(&fixture(file)) {
        Ok(sd) => panic!("{file}: expected an error, read {} tensors", sd.len()),
        Err(e) => format!("{e:#}"),
    }
}

#[test]
fn zip_state_dict_matches_torch() {
    let sd = check_fixture("small_zip.pt", true);
    assert_eq!(sd.len(), 9);
    assert_eq!(sd.get("bn.num_batches_tracked").unwrap().int64_value(&[]), 2);
    assert_eq!(checkpoint::detect_format(&fixture("small_zip.pt")).unwrap(), Format::TorchZip);
}

#[test]
fn legacy_state_dict_with_metadata_matches_torch() {
    // An nn.Module state_dict: an OrderedDict whose `_metadata` is set through BUILD.
    check_fixture("small_legacy.pt", true);
    assert_eq!(checkpoint::detect_format(&fixture("small_legacy.pt")).unwrap(), Format::TorchLegacy);
}

#[test]
fn dtypes_views_and_shared_storages() {
    for file in ["dtypes_zip.pt", "dtypes_legacy.pt"] {
        let sd = check_fixture(file, true);
        // `tail` is base[1:] (same storage, offset 6), `transposed` is base.t().
        let base = sd.get("base").unwrap();
        assert!(sd.get("tail").unwrap().equal(&base.narrow(0, 1, 3)), "{file}");
        assert!(sd.get("transposed").unwrap().equal(&base.tr()), "{file}");
        assert!(sd.get("column").unwrap().equal(&base.select(1, 2)), "{file}");
        assert_eq!(sd.get("i64").unwrap().int64_value(&[0]), -(1i64 << 62), "{file}");
    }
}

#[test]
fn training_checkpoint_is_unwrapped() {
    let sd = check_fixture("nested.pt", true);
    assert!(sd.get("epoch").is_none());
    assert!(sd.keys().all(|k| !k.starts_with("state")), "optimizer state must not leak in");
}

#[test]
fn dataparallel_prefix_is_stripped() {
    let sd = check_fixture("dataparallel.pt", true);
    assert!(sd.keys().all(|k| !k.starts_with("module.")));
}

#[test]
fn safetensors_from_python() {
    let file = "small.safetensors";
    assert_eq!(checkpoint::detect_format(&fixture(file)).unwrap(), Format::Safetensors);
    check_fixture(file, false);
    let meta = checkpoint::read_safetensors_metadata(&fixture(file)).unwrap();
    let want: BTreeMap<String, String> = serde_json::from_value(expected()[file]["metadata"].clone()).unwrap();
    assert_eq!(meta, want);
}

#[test]
fn big_endian_zip_is_byte_swapped() {
    check_fixture("big_endian.pt", true);
}

#[test]
fn legacy_storage_views_are_honoured() {
    check_fixture("legacy_view.pt", true);
}

#[test]
fn format_is_detected_by_content_not_name() {
    let dir = tempfile::tempdir().unwrap();
    for (src, dst) in [("small_zip.pt", "a.safetensors"), ("small_legacy.pt", "b.bin"), ("small.safetensors", "c.pt")] {
        let p = dir.path().join(dst);
        std::fs::copy(fixture(src), &p).unwrap();
        let sd = checkpoint::read(&p).unwrap_or_else(|e| panic!("{dst}: {e:#}"));
        assert_eq!(sd.len(), 9, "{dst}");
    }
}

#[test]
fn forbidden_globals_are_named() {
    // Saved by pickle through __reduce__: os.system is pickled as posix.system.
    for file in ["evil_system_zip.pt", "evil_system_legacy.pt"] {
        let e = read_err(file);
        assert!(e.contains("posix.system") && e.contains("os.system"), "{file}: {e}");
        assert!(e.contains("not a plain tensor checkpoint"), "{file}: {e}");
    }
    let e = read_err("evil_os_raw.pt");
    assert!(e.contains("`os.system`"), "{e}");
    let e = read_err("evil_eval.pt");
    assert!(e.contains("builtins.eval"), "{e}");
    let e = read_err("evil_popen.pt");
    assert!(e.contains("subprocess.Popen"), "{e}");
    let e = read_err("full_model.pt");
    assert!(e.contains("__main__.Tiny") && e.contains("not a plain tensor checkpoint"), "{e}");
}

#[test]
fn storages_claiming_more_than_the_file_are_refused() {
    let e = read_err("huge_storage.pt");
    assert!(e.contains("1000000000000") || e.contains("4000000000000"), "{e}");
    let e = read_err("out_of_bounds.pt");
    assert!(e.contains("reaches element 999"), "{e}");
    let e = read_err("offset_out_of_bounds.pt");
    assert!(e.contains("reaches element 4"), "{e}");
    let e = read_err("expanded_bomb.pt");
    assert!(e.contains("more bytes than the file size justifies"), "{e}");
    let e = read_err("size_overflow.pt");
    assert!(e.contains("overflow"), "{e}");
    let e = read_err("legacy_bad_view.pt");
    assert!(e.contains("outside its 8-element storage"), "{e}");
    let e = read_err("legacy_huge_storage.pt");
    assert!(e.contains("claims 1000000000000 elements"), "{e}");
}

#[test]
fn deep_nesting_is_an_error_not_a_stack_overflow() {
    for file in ["nested_tuples.pt", "nested_lists.pt"] {
        let e = read_err(file);
        assert!(e.contains("nests deeper"), "{file}: {e}");
    }
    let e = read_err("many_marks.pt");
    assert!(e.contains("STOP"), "{e}");
}

#[test]
fn truncated_files_are_errors() {
    let dir = tempfile::tempdir().unwrap();
    for file in ["small_zip.pt", "small_legacy.pt", "dtypes_legacy.pt", "small.safetensors"] {
        let bytes = std::fs::read(fixture(file)).unwrap();
        let n = bytes.len();
        let mut cuts: Vec<usize> = vec![0, 1, 4, 9, 15, 16, 40, n / 2, n - 100, n - 8, n - 1];
        cuts.extend((1..24).map(|i| n * i / 24));
        for cut in cuts {
            let p = dir.path().join(format!("{file}.{cut}"));
            std::fs::write(&p, &bytes[..cut]).unwrap();
            assert!(checkpoint::read(&p).is_err(), "{file} cut at {cut} of {n} bytes was accepted");
        }
    }
}

#[test]
fn garbage_is_an_error() {
    let dir = tempfile::tempdir().unwrap();
    let mut state = 0x9e3779b97f4a7c15u64;
    let mut next = move || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state as u8
    };
    let legacy_head = [0x80, 0x02, 0x8a, 0x0a, 0x6c, 0xfc, 0x9c, 0x46, 0xf9, 0x20, 0x6a, 0xa8, 0x50, 0x19];
    let heads: [&[u8]; 5] = [b"", b"PK\x03\x04", &legacy_head, b"\x10\x00\x00\x00\x00\x00\x00\x00{", b"\x80\x02"];
    for (i, head) in heads.iter().enumerate() {
        for len in [0usize, 1, 7, 100, 4096] {
            let mut bytes = head.to_vec();
            bytes.extend((0..len).map(|_| next()));
            let p = dir.path().join(format!("g{i}-{len}"));
            std::fs::write(&p, &bytes).unwrap();
            assert!(checkpoint::read(&p).is_err(), "garbage {i}/{len} was accepted");
        }
    }
}

/// A VarStore shaped like the fixture's Tiny model, with every variable zero.
fn tiny_vs(conv_out: i64, head: &str, head_classes: i64) -> nn::VarStore {
    let vs = nn::VarStore::new(Device::Cpu);
    let r = vs.root();
    // The variables live on in the store; the returned handles are not needed.
    let _ = r.sub("conv").zeros("weight", &[conv_out, 3, 3, 3]);
    let _ = r.sub("conv").zeros("bias", &[4]);
    let _ = r.sub("bn").zeros("weight", &[4]);
    let _ = r.sub("bn").zeros("bias", &[4]);
    let _ = r.sub("bn").zeros_no_train("running_mean", &[4]);
    let _ = r.sub("bn").zeros_no_train("running_var", &[4]);
    let _ = r.sub(head).zeros("weight", &[head_classes, 4]);
    let _ = r.sub(head).zeros("bias", &[head_classes]);
    vs
}

fn var(vs: &nn::VarStore, name: &str) -> Tensor {
    vs.variables()[name].shallow_clone()
}

#[test]
fn load_into_strict_copies_everything() {
    let sd = checkpoint::read(&fixture("small_zip.pt")).unwrap();
    let vs = tiny_vs(4, "fc", 5);
    let report = checkpoint::load_into(&vs, &sd, &LoadOptions::default()).unwrap();
    assert_eq!(report.loaded, 8);
    assert_eq!(report.skipped, vec!["bn.num_batches_tracked".to_string()]);
    assert!(report.missing.is_empty() && report.unexpected.is_empty());
    for (k, t) in &sd.entries {
        if k != "bn.num_batches_tracked" {
            assert!(var(&vs, k).equal(t), "{k}");
        }
    }
}

#[test]
fn load_into_converts_dtype() {
    let sd = checkpoint::read(&fixture("small_legacy.pt")).unwrap();
    let mut vs = tiny_vs(4, "fc", 5);
    vs.double();
    checkpoint::load_into(&vs, &sd, &LoadOptions::default()).unwrap();
    let w = var(&vs, "fc.weight");
    assert_eq!(w.kind(), Kind::Double);
    assert!(w.equal(&sd.get("fc.weight").unwrap().to_kind(Kind::Double)));
}

#[test]
fn load_into_strict_reports_every_problem_and_copies_nothing() {
    let sd = checkpoint::read(&fixture("small_zip.pt")).unwrap();
    let vs = tiny_vs(5, "head", 5);
    let _ = vs.root().sub("extra").zeros("scale", &[1]);
    let err = checkpoint::load_into(&vs, &sd, &LoadOptions::default()).unwrap_err();
    let msg = format!("{err:#}");
    let err = err.downcast::<LoadError>().expect("a LoadError");
    let s = |k: &str, v: &[i64]| (k.to_string(), v.to_vec());
    assert_eq!(err.missing, vec![s("extra.scale", &[1]), s("head.bias", &[5]), s("head.weight", &[5, 4])]);
    assert_eq!(err.unexpected, vec![s("fc.weight", &[5, 4]), s("fc.bias", &[5])]);
    assert_eq!(err.mismatched, vec![("conv.weight".to_string(), vec![4, 3, 3, 3], vec![5, 3, 3, 3])]);
    for needle in [
        "conv.weight: checkpoint [4, 3, 3, 3] vs model [5, 3, 3, 3]",
        "head.weight [5, 4]",
        "closest unexpected key: fc.weight",
        "fc.bias [5]",
        "hint: the names differ",
        "hint: shapes differ",
    ] {
        assert!(msg.contains(needle), "missing {needle:?} in:\n{msg}");
    }
    assert!(!msg.contains("num_batches_tracked"), "{msg}");
    // All or nothing: matching variables were not touched either.
    assert_eq!(var(&vs, "conv.bias").abs().sum(Kind::Float).double_value(&[]), 0.0);
    // A file of another architecture: the message lists a dozen keys of each kind, not hundreds
    // (the error's fields keep them all).
    let many = LoadError {
        missing: (0..300).map(|i| (format!("m{i}"), vec![1])).collect(),
        unexpected: (0..5).map(|i| (format!("u{i}"), vec![1])).collect(),
        mismatched: Vec::new(),
    };
    let msg = many.to_string();
    assert!(msg.contains("missing from the checkpoint (300)") && msg.contains("    ... and 288 more"), "{msg}");
    assert!(msg.contains("m11 [1]") && !msg.contains("m12 [1]") && msg.contains("u4 [1]"), "{msg}");
    assert!(msg.lines().count() < 30, "{msg}");
}

#[test]
fn load_into_fresh_head_and_non_strict() {
    let sd = checkpoint::read(&fixture("small_zip.pt")).unwrap();
    // A 10-class head: ignore_missing keeps it as initialised.
    let vs = tiny_vs(4, "fc", 10);
    let opts = LoadOptions { ignore_missing: vec!["fc.".into()], ..Default::default() };
    let report = checkpoint::load_into(&vs, &sd, &opts).unwrap();
    assert_eq!(report.loaded, 6);
    assert_eq!(report.missing, vec!["fc.bias".to_string(), "fc.weight".to_string()]);
    assert!(report.skipped.contains(&"fc.weight".to_string()) && report.skipped.contains(&"fc.bias".to_string()));
    assert!(var(&vs, "conv.weight").equal(sd.get("conv.weight").unwrap()));
    assert_eq!(var(&vs, "fc.weight").abs().sum(Kind::Float).double_value(&[]), 0.0);

    // Non-strict: missing and unexpected keys are reported, not errors; shapes still must match.
    let vs = tiny_vs(4, "head", 5);
    let opts = LoadOptions { strict: false, ..Default::default() };
    let report = checkpoint::load_into(&vs, &sd, &opts).unwrap();
    assert_eq!(report.missing, vec!["head.bias".to_string(), "head.weight".to_string()]);
    assert_eq!(report.unexpected, vec!["fc.weight".to_string(), "fc.bias".to_string()]);
    let vs = tiny_vs(5, "fc", 5);
    assert!(checkpoint::load_into(&vs, &sd, &opts).is_err());
}

#[test]
fn key_rules() {
    let rows = Tensor::arange(1001 * 8, (Kind::Float, Device::Cpu)).view([1001, 8]);
    let sd = StateDict {
        entries: vec![
            ("features.denselayer1.norm.1.weight".into(), Tensor::ones([3], (Kind::Float, Device::Cpu))),
            ("features.denselayer12.conv.2.weight".into(), Tensor::ones([3], (Kind::Float, Device::Cpu))),
            ("last_linear.weight".into(), rows.shallow_clone()),
            ("aux.weight".into(), Tensor::ones([1], (Kind::Float, Device::Cpu))),
        ],
    };
    let rules: Vec<KeyRule> = serde_json::from_str(
        r#"[
            {"op": "rename", "pattern": "^(.*denselayer\\d+\\.(?:norm|relu|conv))\\.(\\d+)\\.", "replace": "$1$2."},
            {"op": "drop_first_row", "pattern": "^last_linear\\.weight$"},
            {"op": "rename", "pattern": "^last_linear\\.", "replace": "fc."},
            {"op": "drop", "pattern": "^aux\\."}
        ]"#,
    )
    .unwrap();
    let out = checkpoint::apply_rules(sd, &rules).unwrap();
    let keys: Vec<&str> = out.keys().collect();
    assert_eq!(keys, ["features.denselayer1.norm1.weight", "features.denselayer12.conv2.weight", "fc.weight"]);
    let fc = out.get("fc.weight").unwrap();
    assert_eq!(fc.size(), [1000, 8]);
    assert!(fc.equal(&rows.narrow(0, 1, 1000)));

    // Two keys renamed onto one, an invalid regex, a row-less tensor: errors.
    let two = || StateDict {
        entries: vec![
            ("a.weight".into(), Tensor::ones([1], (Kind::Float, Device::Cpu))),
            ("b.weight".into(), Tensor::ones([1], (Kind::Float, Device::Cpu))),
        ],
    };
    let merge = [KeyRule::Rename { pattern: "^[ab]\\.".into(), replace: "c.".into() }];
    assert!(format!("{:#}", checkpoint::apply_rules(two(), &merge).unwrap_err()).contains("c.weight"));
    assert!(checkpoint::apply_rules(two(), &[KeyRule::Drop { pattern: "(".into() }]).is_err());
    let scalar = StateDict { entries: vec![("s".into(), Tensor::from(1.0f32))] };
    assert!(checkpoint::apply_rules(scalar, &[KeyRule::DropFirstRow { pattern: "s".into() }]).is_err());
}

#[test]
fn safetensors_round_trip_with_metadata() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("w.safetensors");
    let opts = (Kind::Float, Device::Cpu);
    let entries: Vec<(String, Tensor)> = vec![
        ("a.weight".into(), Tensor::randn([3, 4], opts)),
        ("a.t".into(), Tensor::randn([4, 3], opts).tr()), // non-contiguous
        ("h".into(), Tensor::randn([5], opts).to_kind(Kind::Half)),
        ("bf".into(), Tensor::randn([2, 2], opts).to_kind(Kind::BFloat16)),
        ("d".into(), Tensor::randn([2], opts).to_kind(Kind::Double)),
        ("n".into(), Tensor::from_slice(&[i64::MIN, 0, i64::MAX])),
        ("b".into(), Tensor::from_slice(&[true, false])),
        ("s".into(), Tensor::from(2.5f32)),
    ];
    let meta: BTreeMap<String, String> =
        [("format".to_string(), "pt".to_string()), ("arch".into(), "tiny".into())].into();
    std::fs::write(&path, b"old contents").unwrap();
    checkpoint::write_safetensors(&path, &entries, Some(&meta)).unwrap();
    let files: Vec<_> = std::fs::read_dir(dir.path()).unwrap().collect();
    assert_eq!(files.len(), 1, "temporary files left behind");
    assert_eq!(checkpoint::read_safetensors_metadata(&path).unwrap(), meta);
    let back = checkpoint::read(&path).unwrap();
    assert_eq!(back.len(), entries.len());
    for (k, t) in &entries {
        let b = back.get(k).unwrap_or_else(|| panic!("{k} missing"));
        assert_eq!(b.kind(), t.kind(), "{k}");
        assert!(b.equal(t), "{k}");
    }
    // Duplicate names are refused and leave the previous file intact.
    let dup = vec![("x".to_string(), Tensor::from(1.0f32)), ("x".to_string(), Tensor::from(2.0f32))];
    assert!(checkpoint::write_safetensors(&path, &dup, None).is_err());
    assert_eq!(checkpoint::read(&path).unwrap().len(), entries.len());
    // No metadata: an empty map.
    checkpoint::write_safetensors(&path, &entries[..1], None).unwrap();
    assert!(checkpoint::read_safetensors_metadata(&path).unwrap().is_empty());
}
