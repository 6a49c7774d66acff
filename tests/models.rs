//! Registry-driven checks of every model: shapes at the default and a small input size, named
//! stages (channels and reduction), head replacement, input-size errors, and parameter counts
//! against torchvision's published figures or the paper's layer table.
#[macro_use]
mod common;

use tch::{Device, Kind, Tensor};
use zoo::models::{registry, BuildConfig, Model};
use zoo::nn::{trace, without_init};

fn build(name: &str, classes: i64) -> Model {
    without_init(|| Model::new(name, BuildConfig { num_classes: classes, drop_rate: None }, Device::Cpu)).unwrap()
}

fn input(spec: &zoo::models::ModelSpec, side: i64) -> Tensor {
    Tensor::randn([1, spec.input_size[0], side, side], (Kind::Float, Device::Cpu))
}

/// Runs `model` on a `side`-pixel input and returns the logits and each stage's output.
fn run_stages(model: &Model, side: i64) -> (Tensor, std::collections::BTreeMap<String, Tensor>) {
    let x = input(model.spec, side);
    let names: Vec<String> = model.net.feature_info().iter().map(|f| f.name.clone()).collect();
    trace::capture(&names, || model.net.forward_t(&x, false))
}

/// One test per model: logits and pre-logits at the default and a small size,
/// `forward_features` ending at the last stage, and each stage's channels and reduction.
fn check(name: &str) {
    let _g = tch::no_grad_guard();
    let spec = zoo::models::find(name).unwrap();
    let model = build(spec.name, 7);
    let [_, h, _] = spec.input_size;
    let small = spec.min_input.max(64).min(h);
    for side in [h, small] {
        let x = input(spec, side);
        assert_eq!(model.predict(&x).unwrap().size(), [1, 7], "{} logits at {side}", spec.name);
        let feats = model.net.forward_features(&x, false);
        let pooled = model.net.forward_head(&feats, false, true);
        assert_eq!(pooled.size(), [1, model.net.num_features()], "{} pre-logits at {side}", spec.name);
        let last = model.net.feature_info().last().cloned().unwrap();
        assert_eq!(feats.size()[1], last.channels, "{}: forward_features ends at the last stage", spec.name);
    }
    // A stage of reduction r grows by 64/r pixels when the input grows by 64 (a multiple of
    // every reduction), whatever the padding does at the borders.
    let (_, a) = run_stages(&model, small);
    let (_, b) = run_stages(&model, small + 64);
    for f in model.net.feature_info() {
        let (ta, tb) = (&a[&f.name], &b[&f.name]);
        assert_eq!(ta.size()[1], f.channels, "{} stage {} channels", spec.name, f.name);
        assert_eq!(
            tb.size()[2] - ta.size()[2],
            64 / f.reduction,
            "{} stage {} reduction {}",
            spec.name,
            f.name,
            f.reduction
        );
        assert_eq!(
            tb.size()[3] - ta.size()[3],
            64 / f.reduction,
            "{} stage {} reduction {}",
            spec.name,
            f.name,
            f.reduction
        );
    }
}

every_model!(per_model);

/// The per-model tests are the registry: a model registered without a test, or a test left for
/// a model no longer registered, fails here.
#[test]
fn every_registered_model_has_its_own_test() {
    macro_rules! names {
        ($($n:ident),* $(,)?) => {
            vec![$(stringify!($n)),*]
        };
    }
    let listed: Vec<&str> = every_model!(names);
    let registered: Vec<&str> = registry().iter().map(|s| s.name).collect();
    assert_eq!(listed, registered, "tests/common/mod.rs every_model! differs from the registry");
}

#[test]
fn inputs_below_the_minimum_fail_with_a_clear_message() {
    for spec in registry() {
        let model = build(spec.name, 10);
        let x = input(spec, spec.min_input - 1);
        let err = model.predict(&x).unwrap_err().to_string();
        assert!(err.contains("at least") && err.contains(spec.name), "{}: {err}", spec.name);
        let wrong_channels = Tensor::zeros([1, spec.input_size[0] + 1, 64, 64], (Kind::Float, Device::Cpu));
        assert!(model.predict(&wrong_channels).unwrap_err().to_string().contains("channels"));
    }
}

#[test]
fn reset_classifier_replaces_the_head_and_drops_its_old_variables() {
    let _g = tch::no_grad_guard();
    for name in ["resnet18", "vgg11", "alexnet", "lenet5"] {
        let mut model = build(name, 1000);
        let before = model.vs.variables();
        model.reset_classifier(3);
        let after = model.vs.variables();
        assert_eq!(before.len(), after.len(), "{name}: same variables, new shapes");
        let prefix = model.net.classifier_prefixes()[0].clone();
        let head: Vec<_> = after.iter().filter(|(k, _)| k.starts_with(&prefix)).collect();
        assert!(head.iter().all(|(_, t)| t.size()[0] == 3), "{name}: head resized");
        let x = input(model.spec, model.spec.input_size[1]);
        assert_eq!(model.predict(&x).unwrap().size(), [1, 3]);
        model.reset_classifier(0);
        assert_eq!(model.predict(&x).unwrap().size(), [1, model.net.num_features()], "{name}: no head");
    }
}

#[test]
fn unknown_names_suggest_the_closest() {
    let err = zoo::models::find("resnet5").unwrap_err().to_string();
    assert!(err.contains("resnet50"), "{err}");
    assert!(zoo::models::find("ResNet50").is_ok(), "lookup is case-insensitive");
    let err = zoo::models::find("qqqqqqqqqq").unwrap_err().to_string();
    assert!(err.contains("zoo list"), "{err}");
}

/// Parameter counts, exactly torchvision's own (`Weights.meta["num_params"]`, dumped by the venv),
/// for every torchvision weights of every torchvision architecture the zoo registers.
#[test]
fn parameter_counts_match_torchvision_published_figures() {
    let rows = common::torchvision_meta_for_zoo();
    for row in &rows {
        let arch = row["model"].as_str().unwrap();
        let spec = zoo::models::find(arch).unwrap();
        let published = row["num_params"].as_i64().unwrap();
        let count = zoo::commands::list::param_count(spec);
        // vgg16's IMAGENET1K_FEATURES too: torchvision keeps its classifier's layers (NaN-filled)
        // and counts them.
        assert_eq!(count, published, "{arch} {}: torchvision publishes {published} parameters", row["tag"]);
    }
    eprintln!("{} torchvision weights' parameter counts agree", rows.len());
}

/// Parameter counts of the networks torchvision lacks, derived here from each paper's layer
/// description (the layer shapes are the papers'; the totals are this test's arithmetic, except
/// where a comment cites the paper's own figure).
#[test]
fn parameter_counts_from_the_papers_layer_tables() {
    let conv = |cin: i64, cout: i64, k: i64, groups: i64| cout * (cin / groups) * k * k + cout;
    let fc = |i: i64, o: i64| i * o + o;
    // LeNet-5: C1 6@5x5 on 1 channel, C3 16@5x5, C5 400->120, F6 120->84, output 84->10.
    // 61,706 is DERIVED (dense C3, a linear output layer), not the paper's: LeCun et al. (1998)
    // connect C3 sparsely (Table I's connection scheme; the text gives 1,516 trainable parameters,
    // not the dense 2,416) and end with RBF units; the zoo's `lenet5` is the common modern form
    // this arithmetic describes.
    let lenet = conv(1, 6, 5, 1) + conv(6, 16, 5, 1) + fc(400, 120) + fc(120, 84) + fc(84, 10);
    assert_eq!(lenet, 61_706);
    // AlexNet 2012: conv2, conv4, conv5 split over two GPUs (groups of 2); FC 9216-4096-4096-1000.
    let alexnet = conv(3, 96, 11, 1)
        + conv(96, 256, 5, 2)
        + conv(256, 384, 3, 1)
        + conv(384, 384, 3, 2)
        + conv(384, 256, 3, 2)
        + fc(256 * 6 * 6, 4096)
        + fc(4096, 4096)
        + fc(4096, 1000);
    // DERIVED by this arithmetic; the paper (Krizhevsky et al., 2012) says "60 million parameters".
    assert_eq!(alexnet, 60_965_224);
    // ZFNet: the layer shapes of Zeiler and Fergus (2013), Fig. 3: 96@7x7/2, 256@5x5/2, 384,
    // 384, 256 @3x3, FC 9216-4096-4096-1000, dense (no groups). The paper prints no parameter
    // total: the count is DERIVED by this arithmetic.
    let zfnet = conv(3, 96, 7, 1)
        + conv(96, 256, 5, 1)
        + conv(256, 384, 3, 1)
        + conv(384, 384, 3, 1)
        + conv(384, 256, 3, 1)
        + fc(256 * 6 * 6, 4096)
        + fc(4096, 4096)
        + fc(4096, 1000);
    for (name, expected, classes) in [("lenet5", lenet, 10), ("alexnet_lrn", alexnet, 1000), ("zfnet", zfnet, 1000)] {
        let model = build(name, classes);
        assert_eq!(model.num_params(), expected, "{name}");
    }
}

/// The map sizes the papers print for their first layers.
#[test]
fn paper_map_sizes() {
    let _g = tch::no_grad_guard();
    let sizes = |name: &str, taps: &[&str]| -> Vec<i64> {
        let model = build(name, 1000);
        let x = input(model.spec, model.spec.input_size[1]);
        let names: Vec<String> = taps.iter().map(|s| s.to_string()).collect();
        let (_, got) = trace::capture(&names, || model.net.forward_t(&x, false));
        taps.iter().map(|t| got[*t].size()[2]).collect()
    };
    // AlexNet 2012 at 227: 55 after conv1, 27 after pool1, 13 after pool2, 6 after pool5.
    assert_eq!(sizes("alexnet_lrn", &["features.0", "features.3", "features.7", "features.14"]), [55, 27, 13, 6]);
    // ZFNet at 224: 110 after conv1, 55 after pool1, 26 after conv2, 13 after pool2, 6 after pool5.
    assert_eq!(
        sizes("zfnet", &["features.0", "features.2", "features.4", "features.6", "features.14"]),
        [110, 55, 26, 13, 6]
    );
    // LeNet-5 at 32: C1 28, S2 14, C3 10, S4 5.
    assert_eq!(sizes("lenet5", &["features.0", "features.2", "features.3", "features.5"]), [28, 14, 10, 5]);
}

#[test]
fn every_weights_entry_names_a_registered_architecture_with_its_class_count() {
    let manifest = zoo::weights::manifest().unwrap();
    // The whole manifest, by source layout: an entry lost (or added) shows here.
    let mut layouts = std::collections::BTreeMap::new();
    for e in &manifest.entries {
        *layouts.entry(e.layout.as_deref().unwrap_or("-")).or_insert(0) += 1;
    }
    let expected = [
        ("cadene", 3),
        ("efficientnet-lite-pytorch", 1),
        ("pytorchcv", 10),
        ("timm", 4),
        ("torchvision", 43),
        ("zoo", 1),
    ];
    assert_eq!(layouts, expected.into_iter().collect(), "the manifest's entries by layout");
    for e in &manifest.entries {
        let arch = e.name.split_once('.').map_or(e.name.as_str(), |(a, _)| a);
        let spec = zoo::models::find(arch).unwrap_or_else(|err| panic!("{}: {err}", e.name));
        assert_eq!(spec.input_size[0], e.preprocess.channels as i64, "{}: channels", e.name);
        assert!(e.preprocess.crop[0] as i64 >= spec.min_input, "{}: crop below the model's minimum", e.name);
    }
    // Every architecture with public weights has exactly one default entry.
    for arch in manifest.architectures() {
        let defaults = manifest.entries_for(arch).iter().filter(|e| e.default).count();
        assert_eq!(defaults, 1, "{arch}: {defaults} default entries");
    }
}

#[test]
fn bninception_refuses_sides_its_pools_cannot_take_before_running() {
    use zoo::models::bninception::side_fits;
    // Sides 223..=230 (31..38 modulo 32) go through; 299 and 231 do not.
    assert!((223..=230).all(side_fits) && side_fits(256) && side_fits(100));
    assert!(!side_fits(299) && !side_fits(231) && !side_fits(240));
    let model = build("bninception", 1000);
    let err = model.predict(&input(model.spec, 299)).unwrap_err().to_string();
    assert!(err.contains("299x299") && err.contains("modulo 32"), "{err}");
}

/// The chunk is a property of the model and this process's cache share, not a number tied to one
/// CPU: at least one image, at most the images whose largest map fits in two thirds of the
/// share (a VM's view of a whole socket's L3 bounded per core), and running a batch in chunks
/// gives the whole batch's result.
#[test]
fn inference_in_cache_sized_chunks_gives_the_whole_batch_result() {
    tch::manual_seed(3);
    let share = zoo::models::cpu_cache_share_bytes();
    let cpus = std::thread::available_parallelism().map_or(1, |n| n.get() as i64);
    assert!((1..=cpus * (16 << 20)).contains(&share), "cache share {share} bytes for {cpus} CPUs");
    for name in ["resnet18", "mobilenet_v2"] {
        let model = Model::new(name, BuildConfig::default(), Device::Cpu).unwrap();
        let side = 96;
        let chunk = model.inference_chunk([3, side, side]);
        let one = Tensor::zeros([1, 3, side, side], (Kind::Float, Device::Cpu));
        let (_, events) = tch::no_grad(|| trace::record(|| model.net.forward_t(&one, false)));
        let largest = events.iter().map(|e| e.output_shape.iter().product::<i64>()).max().unwrap() * 4;
        eprintln!("{name} at {side}: chunk {chunk} (largest map {largest} bytes, cache share {share} bytes)");
        assert!(chunk >= 1, "{name}: chunk {chunk}");
        assert!(chunk == 1 || chunk * largest <= share * 2 / 3, "{name}: {chunk} images of {largest} bytes");
        let batch = (chunk + 2).min(24);
        let x = Tensor::randn([batch, 3, side, side], (Kind::Float, Device::Cpu));
        let whole = model.predict(&x).unwrap();
        for c in [1, 3, chunk, batch, 100] {
            let p = common::compare(&model.predict_in_chunks(&x, c).unwrap(), &whole);
            assert!(p.full <= common::PARITY_TOL, "{name} in chunks of {c}: {p:?}");
        }
    }
}

/// Every model is a tch module: `xs.apply_t(&model, train)` gives its logits, and a backbone
/// built without a head goes into `nn::seq_t()` in front of a tch layer like any other module.
#[test]
fn models_compose_as_tch_modules() {
    use tch::nn::{self, ModuleT};
    let _g = tch::no_grad_guard();
    let x = Tensor::randn([2, 3, 96, 96], (Kind::Float, Device::Cpu));
    let model = build("resnet18", 10);
    let applied = x.apply_t(&model, false);
    assert!(applied.allclose(&model.predict(&x).unwrap(), 1e-6, 1e-6, false), "apply_t is the model's forward");
    let backbone = build("mobilenet_v3_small", 0);
    let width = backbone.net.num_features();
    let pooled = backbone.forward_t(&x, false);
    assert_eq!(pooled.size(), [2, width], "a model without a head gives its pooled features");
    let vs = nn::VarStore::new(Device::Cpu);
    let head = nn::linear(vs.root() / "head", width, 4, Default::default());
    let expected = pooled.apply(&head);
    let seq = nn::seq_t().add(backbone).add(head);
    let out = x.apply_t(&seq, false);
    assert_eq!(out.size(), [2, 4]);
    assert!(out.allclose(&expected, 1e-6, 1e-6, false), "seq_t runs the backbone, then the tch head");
}

/// Batch-norm modes are held by the layers: a model whose `bn1` is frozen and whose momentum is
/// overridden, run in train mode on another thread than the one that set them, keeps `bn1`'s
/// running statistics and moves the others by exactly the momentum given (PyTorch's rule:
/// `(1 - m) * running + m * batch`, here from 0 with m = 0.25).
#[test]
fn batch_norm_modes_hold_on_any_thread() {
    let model = Model::new("resnet18", BuildConfig::default(), Device::Cpu).unwrap();
    assert!(model.batch_norms.paths().any(|p| p == "layer4.1.bn2"), "the model lists its batch norms");
    model.batch_norms.freeze(&["bn1".to_string()].into_iter().collect());
    model.batch_norms.set_momentum(Some(0.25));
    let vars = model.vs.variables();
    let mean = |k: &str| vars[&format!("{k}.running_mean")].shallow_clone();
    let before = mean("bn1").copy();
    let handle = std::thread::spawn(move || {
        tch::manual_seed(0);
        let x = Tensor::randn([4, 3, 64, 64], (Kind::Float, Device::Cpu));
        let _ = tch::no_grad(|| model.net.forward_t(&x, true));
        model
    });
    let model = handle.join().unwrap();
    assert!(mean("bn1").equal(&before), "a frozen batch norm keeps its statistics on another thread");
    // layer1.0.bn1's input: conv1 → bn1 (frozen: running statistics) → relu → maxpool → conv.
    let _g = tch::no_grad_guard();
    tch::manual_seed(0);
    let x = Tensor::randn([4, 3, 64, 64], (Kind::Float, Device::Cpu));
    let (_, taps) = trace::capture(&["layer1.0.conv1".to_string()], || model.net.forward_t(&x, false));
    let batch_mean = taps["layer1.0.conv1"].mean_dim([0i64, 2, 3].as_slice(), false, Kind::Float);
    let moved = mean("layer1.0.bn1");
    let expected = &batch_mean * 0.25;
    let err = (&moved - &expected).abs().max().double_value(&[]);
    assert!(err < 1e-5, "running mean moved by momentum 0.25: off by {err:e}");
}
