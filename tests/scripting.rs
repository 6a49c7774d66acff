//! The `zoo` binary as scripts use it: JSON from `list`, `info` and `summary --compare` (checked
//! against the registry and against torchvision's own weights metadata), shell completions that
//! bash accepts, and exit statuses (2: the run could not start).
mod common;

use std::process::{Command, Output};

fn zoo(args: &[&str]) -> Output {
    let home = tempfile::tempdir().unwrap();
    Command::new(env!("CARGO_BIN_EXE_zoo"))
        .env("ZOO_HOME", home.path())
        .env("ZOO_OFFLINE", "1")
        .args(args)
        .output()
        .unwrap()
}

fn json(args: &[&str]) -> serde_json::Value {
    let o = zoo(args);
    assert!(o.status.success(), "zoo {args:?}: {}", String::from_utf8_lossy(&o.stderr));
    serde_json::from_slice(&o.stdout).unwrap_or_else(|e| panic!("zoo {args:?} printed no JSON ({e})"))
}

/// torchvision's metadata of a weights enum member, from the venv: `[resize, crop, num_params]`.
fn torchvision_meta(weights: &str) -> [i64; 3] {
    let py = common::python();
    let code = format!(
        "import torchvision.models as m\nw = m.get_weight('{weights}')\nt = w.transforms()\n\
         print(t.resize_size[0], t.crop_size[0], w.meta['num_params'])"
    );
    let o = Command::new(py).args(["-c", &code]).output().unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let v: Vec<i64> = String::from_utf8_lossy(&o.stdout).split_whitespace().map(|x| x.parse().unwrap()).collect();
    [v[0], v[1], v[2]]
}

#[test]
fn list_json_has_every_registered_model() {
    let v = json(&["list", "--format", "json"]);
    let rows = v.as_array().unwrap();
    let names: Vec<&str> = rows.iter().map(|r| r["model"].as_str().unwrap()).collect();
    let registry: Vec<&str> = zoo::models::registry().iter().map(|s| s.name).collect();
    assert_eq!(names, registry);
    let resnet50 = rows.iter().find(|r| r["model"] == "resnet50").unwrap();
    assert_eq!(resnet50["params"].as_i64().unwrap(), torchvision_meta("ResNet50_Weights.IMAGENET1K_V1")[2]);
    let glob = json(&["list", "resnet*", "--format", "json"]);
    assert!(glob.as_array().unwrap().iter().all(|r| r["model"].as_str().unwrap().starts_with("resnet")));
}

#[test]
fn info_takes_arch_dot_tag_and_shows_that_entrys_preprocessing() {
    for (name, tv) in [("resnet50.tv_in1k", "ResNet50_Weights.IMAGENET1K_V1"), ("resnet50", "ResNet50_Weights.DEFAULT")]
    {
        let v = json(&["info", name, "--format", "json"]);
        let [resize, crop, params] = torchvision_meta(tv);
        assert_eq!(v["params"].as_i64().unwrap(), params, "{name}");
        let p = &v["weights"]["preprocess"];
        assert_eq!(p["resize"].as_i64().unwrap(), resize, "{name}: resize as torchvision's transforms()");
        assert_eq!(p["crop"][0].as_i64().unwrap(), crop, "{name}: crop as torchvision's transforms()");
    }
    // torchvision's enum names, as a torchvision user writes them.
    for (name, entry) in [("resnet50.IMAGENET1K_V2", "resnet50.tv2_in1k"), ("resnet50.DEFAULT", "resnet50.tv2_in1k")] {
        assert_eq!(json(&["info", name, "--format", "json"])["weights"]["name"], entry, "{name}");
    }
    let text = zoo(&["info", "resnet50.tv_in1k"]);
    assert!(text.status.success());
    let text = String::from_utf8_lossy(&text.stdout);
    assert!(text.contains("weights:     resnet50.tv_in1k") && text.contains("resize 256"), "{text}");
    let bad = zoo(&["info", "resnet50.no_such_tag"]);
    assert_eq!(bad.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&bad.stderr).contains("resnet50.tv_in1k"), "the error lists the tags");
}

#[test]
fn summary_compare_prints_json_and_csv_not_the_table() {
    let v = json(&["summary", "resnet18", "mobilenet_v2", "--compare", "--format", "json", "--sort", "name"]);
    let rows = v.as_array().unwrap();
    assert_eq!(rows.len(), 2);
    assert_eq!(rows[0]["model"], "mobilenet_v2");
    assert_eq!(rows[0]["params"].as_i64().unwrap(), torchvision_meta("MobileNet_V2_Weights.IMAGENET1K_V1")[2]);
    let o = zoo(&["summary", "resnet18", "mobilenet_v2", "--compare", "--format", "csv", "--sort", "name"]);
    assert!(o.status.success());
    let mut r = csv::Reader::from_reader(&o.stdout[..]);
    assert_eq!(r.headers().unwrap(), vec!["model", "params", "macs", "top1", "receptive_field"]);
    let recs: Vec<csv::StringRecord> = r.records().map(|x| x.unwrap()).collect();
    assert_eq!(recs.len(), 2);
    assert_eq!(&recs[1][0], "resnet18");
    assert_eq!(recs[1][1].parse::<i64>().unwrap(), torchvision_meta("ResNet18_Weights.IMAGENET1K_V1")[2]);
}

#[test]
fn bash_completion_script_parses_and_knows_the_subcommands() {
    let o = zoo(&["completions", "bash"]);
    assert!(o.status.success());
    let script = String::from_utf8(o.stdout).unwrap();
    for sub in ["classify", "features", "finetune", "weights", "summary"] {
        assert!(script.contains(sub), "completion lacks {sub}");
    }
    let tmp = tempfile::tempdir().unwrap();
    let f = tmp.path().join("zoo.bash");
    std::fs::write(&f, &script).unwrap();
    let check = Command::new("bash").arg("-n").arg(&f).output().unwrap();
    assert!(check.status.success(), "bash -n: {}", String::from_utf8_lossy(&check.stderr));
    for shell in ["zsh", "fish"] {
        let o = zoo(&["completions", shell]);
        assert!(o.status.success() && o.stdout.len() > 200, "{shell} completion");
    }
}

#[test]
fn runs_that_cannot_start_exit_2_with_a_message() {
    let tmp = tempfile::tempdir().unwrap();
    let img = tmp.path().join("x.png");
    image::RgbImage::new(8, 8).save(&img).unwrap();
    let img = img.to_str().unwrap();
    for (args, says) in [
        (vec!["classify", "lenet5", "--top-k", "0", img], "at least 1"),
        (vec!["classify", "lenet5", "--batch-size", "0", img], "at least 1"),
        (vec!["features", "lenet5", "--batch-size", "0", "--output", "f.npy", img], "at least 1"),
        (vec!["classify", "no_such_net", img], "no_such_net"),
        (vec!["info", "no_such_net"], "no_such_net"),
    ] {
        let o = zoo(&args);
        let err = String::from_utf8_lossy(&o.stderr);
        assert_eq!(o.status.code(), Some(2), "zoo {args:?}: {err}");
        assert!(err.contains(says), "zoo {args:?} should say '{says}': {err}");
    }
}

/// `zoo weights list --format json`: one object per entry the table lists, with the manifest's
/// fields (torchvision's url and accuracy for resnet50's entries) and where the cache keeps it.
#[test]
fn weights_list_prints_json() {
    let rows = json(&["weights", "list", "resnet50*", "--format", "json"]);
    let rows = rows.as_array().unwrap();
    let table = zoo(&["weights", "list", "resnet50*"]);
    let table = String::from_utf8_lossy(&table.stdout);
    assert!(table.contains(&format!("{} entries", rows.len())), "{table}");
    let v2 = rows.iter().find(|r| r["name"] == "resnet50.tv2_in1k").expect("resnet50.tv2_in1k");
    assert_eq!(v2["default"], true);
    assert_eq!(v2["cached"], false, "an empty zoo home");
    assert!(v2["path"].as_str().unwrap().ends_with(".pth"), "{v2}");
    assert_eq!(v2["acc1"].as_f64(), Some(80.858), "torchvision's published top-1 of IMAGENET1K_V2");
    assert!(v2["urls"][0].as_str().unwrap().starts_with("https://download.pytorch.org/models/resnet50-"), "{v2}");
}
