//! GoogLeNet (Szegedy et al., "Going Deeper with Convolutions", CVPR 2015, arXiv:1409.4842): nine
//! Inception modules of parallel 1×1, 3×3, "5×5" and pooled branches, with two auxiliary
//! classifiers on intermediate stages for training.
//!
//! Layout and variable paths follow torchvision's `googlenet.py`, so its checkpoint loads
//! unchanged: `BasicConv2d` units (`conv` without bias, `bn` with eps 1e-3, ReLU), the branches
//! `branch1`..`branch4`, max pools in ceil mode, and the auxiliary heads `aux1`/`aux2`. Like
//! torchvision, the "5×5" branch uses a 3×3 convolution: the released weights were trained so.
//!
//! The registry's `googlenet` is torchvision's pretrained model as it hands it out: no auxiliary
//! heads (6.6M parameters) and `transform_input` on. torchvision's checkpoint file still holds the
//! heads' tensors (`aux1.*`, `aux2.*`): load it with those prefixes ignored as unexpected (or
//! dropped by a key rule), or build the heads with [`googlenet_with_aux`] to load it strictly and
//! train with them ([`Classifier::forward_aux`]). A checkpoint without heads loads into that
//! model with `aux1.`/`aux2.` ignored as missing ([`AUX_PREFIXES`]).
use super::inception::{AuxPool, AuxSpec, InceptionAux};
use super::registry::{row, ModelSpec};
use super::{ArchOptions, BuildConfig, Classifier, FeatureInfo, Model};
use crate::nn::trace::{self, Op};
use crate::nn::{
    basic_conv, path_of, AdaptiveAvgPool2d, ConvBnAct, ConvOpts, Head, LinearHead, ModuleT, Pool2d, Sequential,
};
use anyhow::Result;
use tch::{nn, Device, Tensor};

/// Variable prefixes of the auxiliary heads, for `LoadOptions::ignore_missing` /
/// `ignore_unexpected` when a checkpoint and the model disagree on them.
pub const AUX_PREFIXES: [&str; 2] = ["aux1.", "aux2."];

/// Options of the network beyond [`BuildConfig`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GoogLeNetConfig {
    /// Builds the auxiliary classifiers `aux1` (after `inception4a`) and `aux2` (after
    /// `inception4d`), run in train mode only.
    pub aux_logits: bool,
    /// Re-normalises ImageNet-normalised input as the checkpoint expects (see [`transform_input`]).
    pub transform_input: bool,
}

impl Default for GoogLeNetConfig {
    /// torchvision's pretrained model: no auxiliary heads, input transform on.
    fn default() -> Self {
        GoogLeNetConfig { aux_logits: false, transform_input: true }
    }
}

/// torchvision's `_transform_input`: maps input normalised with ImageNet's mean and std to the
/// `(x - 0.5) / 0.5` normalisation the Google-trained weights saw, channel by channel, with the
/// same arithmetic (scale, then shift) so results match bit for bit.
pub fn transform_input(xs: &Tensor) -> Tensor {
    const MEAN: [f64; 3] = [0.485, 0.456, 0.406];
    const STD: [f64; 3] = [0.229, 0.224, 0.225];
    let chans: Vec<Tensor> = (0..3)
        .map(|c| xs.select(1, c).unsqueeze(1) * (STD[c as usize] / 0.5) + (MEAN[c as usize] - 0.5) / 0.5)
        .collect();
    Tensor::cat(&chans, 1)
}

/// Widths of one Inception module: input, 1×1, 3×3 reduce, 3×3, "5×5" reduce, "5×5", pool
/// projection (the columns of the paper's Table 1).
type InceptionWidths = [i64; 7];

/// One step of the network, in order: the module name and what it is.
enum Step {
    /// `BasicConv2d`: in, out, kernel, stride, padding.
    Conv(i64, i64, i64, i64, i64),
    /// Max pool in ceil mode: kernel, stride.
    MaxPool(i64, i64),
    Inception(InceptionWidths),
}

/// The network as data (torchvision's module names; the paper's Table 1).
#[rustfmt::skip]
const STEPS: [(&str, Step); 16] = [
    ("conv1", Step::Conv(3, 64, 7, 2, 3)),
    ("maxpool1", Step::MaxPool(3, 2)),
    ("conv2", Step::Conv(64, 64, 1, 1, 0)),
    ("conv3", Step::Conv(64, 192, 3, 1, 1)),
    ("maxpool2", Step::MaxPool(3, 2)),
    ("inception3a", Step::Inception([192, 64, 96, 128, 16, 32, 32])),
    ("inception3b", Step::Inception([256, 128, 128, 192, 32, 96, 64])),
    ("maxpool3", Step::MaxPool(3, 2)),
    ("inception4a", Step::Inception([480, 192, 96, 208, 16, 48, 64])),
    ("inception4b", Step::Inception([512, 160, 112, 224, 24, 64, 64])),
    ("inception4c", Step::Inception([512, 128, 128, 256, 24, 64, 64])),
    ("inception4d", Step::Inception([512, 112, 144, 288, 32, 64, 64])),
    ("inception4e", Step::Inception([528, 256, 160, 320, 32, 128, 128])),
    ("maxpool4", Step::MaxPool(2, 2)),
    ("inception5a", Step::Inception([832, 256, 160, 320, 32, 128, 128])),
    ("inception5b", Step::Inception([832, 384, 192, 384, 48, 128, 128])),
];

/// Where the auxiliary heads branch off, with their input widths.
const AUX: [(&str, &str, i64); 2] = [("aux1", "inception4a", 512), ("aux2", "inception4d", 528)];

/// Width of the last stage (`inception5b`), the classifier's input.
const NUM_FEATURES: i64 = 1024;

/// torchvision's dropout before the auxiliary heads' last layer.
const AUX_DROPOUT: f64 = 0.7;

/// An Inception module: four branches concatenated along channels.
#[derive(Debug)]
struct Inception {
    path: String,
    branch1: ConvBnAct,
    branch2: Sequential,
    branch3: Sequential,
    branch4: Sequential,
}

impl Inception {
    fn new(p: &nn::Path, w: InceptionWidths) -> Self {
        let [cin, c1, c3r, c3, c5r, c5, pool] = w;
        let one = ConvOpts::default();
        let pair = |name: &str, red: i64, out: i64| {
            let bp = p / name;
            let mut seq = Sequential::new(&bp);
            seq.push(basic_conv(&(&bp / 0), cin, red, 1, one));
            seq.push(basic_conv(&(&bp / 1), red, out, 3, one.padding(1)));
            seq
        };
        let bp = p / "branch4";
        let mut branch4 = Sequential::new(&bp);
        branch4.push(Pool2d::max(&(&bp / 0), 3, 1).padding(1).ceil_mode(true));
        branch4.push(basic_conv(&(&bp / 1), cin, pool, 1, one));
        Inception {
            path: path_of(p),
            branch1: basic_conv(&(p / "branch1"), cin, c1, 1, one),
            branch2: pair("branch2", c3r, c3),
            branch3: pair("branch3", c5r, c5),
            branch4,
        }
    }
}

impl ModuleT for Inception {
    fn forward_t(&self, xs: &Tensor, train: bool) -> Tensor {
        trace::layer(
            &self.path,
            || Op::Container("Inception"),
            xs,
            |xs| {
                let outs = [
                    self.branch1.forward_t(xs, train),
                    self.branch2.forward_t(xs, train),
                    self.branch3.forward_t(xs, train),
                    self.branch4.forward_t(xs, train),
                ];
                Tensor::cat(&outs, 1)
            },
        )
    }
}

/// An auxiliary classifier: 4×4 average pool, 1×1 conv to 128, FC 2048→1024, ReLU, dropout, FC.
const AUX_HEAD: AuxSpec = AuxSpec {
    pool: AuxPool::Adaptive(4),
    convs: &[("conv", 128, 1)],
    global_pool: false,
    hidden: Some(("fc1", 2048, 1024)),
    fc: ("fc2", 1024),
};

/// GoogLeNet (Inception v1).
#[derive(Debug)]
pub struct GoogLeNet {
    config: GoogLeNetConfig,
    /// `STEPS` built, with their names.
    body: Vec<(&'static str, Box<dyn ModuleT>)>,
    /// `aux1`, `aux2` when built, with the module they follow.
    aux: Vec<(&'static str, InceptionAux)>,
    avgpool: AdaptiveAvgPool2d,
    fc: LinearHead,
}

impl GoogLeNet {
    /// `build.drop_rate` sets the dropout before every classifier, the auxiliary ones included
    /// (torchvision: 0.2 before `fc`, 0.7 in the auxiliary heads).
    pub fn new(p: &nn::Path, build: &BuildConfig, config: GoogLeNetConfig) -> Self {
        let body = STEPS
            .iter()
            .map(|(name, step)| {
                let sp = p / *name;
                let layer: Box<dyn ModuleT> = match *step {
                    Step::Conv(cin, cout, k, s, pad) => {
                        Box::new(basic_conv(&sp, cin, cout, k, ConvOpts::default().stride(s).padding(pad)))
                    }
                    Step::MaxPool(k, s) => Box::new(Pool2d::max(&sp, k, s).ceil_mode(true)),
                    Step::Inception(w) => Box::new(Inception::new(&sp, w)),
                };
                (*name, layer)
            })
            .collect();
        let aux_drop = build.drop_rate.unwrap_or(AUX_DROPOUT);
        let aux = if config.aux_logits {
            AUX.iter()
                .map(|&(name, after, cin)| {
                    (after, InceptionAux::new(p, name, cin, AUX_HEAD, build.num_classes, aux_drop))
                })
                .collect()
        } else {
            Vec::new()
        };
        GoogLeNet {
            config,
            body,
            aux,
            avgpool: AdaptiveAvgPool2d::new(&(p / "avgpool"), 1),
            fc: LinearHead::new(p, "fc", NUM_FEATURES, build.num_classes, build.drop_rate.unwrap_or(0.2)),
        }
    }

    /// The last stage's map and, when `with_aux` and the heads exist, their outputs in order.
    fn run(&self, xs: &Tensor, train: bool, with_aux: bool) -> (Tensor, Vec<Tensor>) {
        let mut xs = if self.config.transform_input { transform_input(xs) } else { xs.shallow_clone() };
        let mut aux_out = Vec::new();
        for (name, layer) in &self.body {
            xs = layer.forward_t(&xs, train);
            if with_aux {
                aux_out
                    .extend(self.aux.iter().filter(|(after, _)| after == name).map(|(_, a)| a.forward_t(&xs, train)));
            }
        }
        (xs, aux_out)
    }
}

classifier_module!(GoogLeNet);

impl Classifier for GoogLeNet {
    fn forward_features(&self, xs: &Tensor, train: bool) -> Tensor {
        self.run(xs, train, false).0
    }

    fn forward_head(&self, xs: &Tensor, train: bool, pre_logits: bool) -> Tensor {
        self.fc.forward(self.avgpool.forward_t(xs, train).flatten(1, -1), train, pre_logits)
    }

    /// In train mode with the heads built: logits and `[aux1, aux2]` (torchvision returns them
    /// as `(logits, aux2, aux1)`). In eval mode the heads do not run, as in torchvision.
    fn forward_aux(&self, xs: &Tensor, train: bool) -> (Tensor, Vec<Tensor>) {
        let (feats, aux) = self.run(xs, train, train);
        (self.forward_head(&feats, train, false), aux)
    }

    fn num_features(&self) -> i64 {
        NUM_FEATURES
    }

    fn head(&self) -> &dyn Head {
        &self.fc
    }

    fn head_mut(&mut self) -> &mut dyn Head {
        &mut self.fc
    }

    /// Replaces `fc` and the auxiliary heads' `fc2`, which classify the same classes.
    fn reset_classifier(&mut self, root: &nn::Path, num_classes: i64) {
        self.fc.reset(root, num_classes);
        for (_, a) in &mut self.aux {
            a.fc.reset(root, num_classes);
        }
    }

    fn classifier_prefixes(&self) -> Vec<String> {
        let aux = self.aux.iter().flat_map(|(_, a)| a.fc.prefixes());
        self.fc.prefixes().into_iter().chain(aux).collect()
    }

    /// The output of each resolution: stride 2 (`conv1`), 4 (`conv3`), 8 (`inception3b`),
    /// 16 (`inception4e`) and 32 (`inception5b`).
    fn feature_info(&self) -> Vec<FeatureInfo> {
        vec![
            FeatureInfo::new("conv1", 64, 2),
            FeatureInfo::new("conv3", 192, 4),
            FeatureInfo::new("inception3b", 480, 8),
            FeatureInfo::new("inception4e", 832, 16),
            FeatureInfo::new("inception5b", NUM_FEATURES, 32),
        ]
    }
}

/// The registry's builder: torchvision's pretrained configuration (no auxiliary heads).
pub fn build(p: &nn::Path, b: &BuildConfig) -> Box<dyn Classifier> {
    build_with(p, b, ArchOptions::default())
}

/// The builder with options: unset ones are the pretrained configuration's.
pub fn build_with(p: &nn::Path, b: &BuildConfig, o: ArchOptions) -> Box<dyn Classifier> {
    let d = GoogLeNetConfig::default();
    let config = GoogLeNetConfig {
        aux_logits: o.aux_logits.unwrap_or(d.aux_logits),
        transform_input: o.transform_input.unwrap_or(d.transform_input),
    };
    Box::new(GoogLeNet::new(p, b, config))
}

/// A `googlenet` [`Model`] with the auxiliary heads built (13.0M parameters), which loads
/// torchvision's checkpoint file strictly and returns the heads' logits from
/// [`Classifier::forward_aux`] in train mode.
pub fn googlenet_with_aux(config: BuildConfig, device: Device) -> Result<Model> {
    Model::with_options("googlenet", config, ArchOptions { aux_logits: Some(true), ..ArchOptions::default() }, device)
}

/// The paper, as listings cite it.
pub const PAPER: &str = "Szegedy et al., Going Deeper with Convolutions, CVPR 2015";

/// The registered variants, in listing order ([`super::registry`] concatenates every family's).
pub(super) fn variants() -> Vec<ModelSpec> {
    vec![ModelSpec {
        build_with: Some(build_with),
        optional: &AUX_PREFIXES,
        aux_weight: 0.3,
        ..row("googlenet", "GoogLeNet", PAPER, "fc.", 224, 15, build)
    }]
}
