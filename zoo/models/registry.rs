//! The registry: one table of every architecture zoo builds. Names are torchvision's wherever
//! torchvision has the model, so users move between the two without a lookup table.
use super::classic::ClassicNet;
use super::resnet::{BlockKind::*, ResNet, ResNetConfig};
use super::{alexnet, lenet, vgg, zfnet, ArchOptions, BuildConfig, Classifier};
use super::{efficientnet_lite, mobilenet_v2, mobilenet_v3, shufflenet_v2};
use anyhow::{bail, Result};
use std::sync::OnceLock;
use tch::nn;

/// One registered architecture.
pub struct ModelSpec {
    /// Registry name (`resnet50`), lower case.
    pub name: &'static str,
    /// Family (`ResNet`), for listings.
    pub family: &'static str,
    /// The paper that introduced it.
    pub paper: &'static str,
    /// Default input [channels, height, width].
    pub input_size: [i64; 3],
    /// Smallest height and width the network accepts.
    pub min_input: i64,
    /// Classes of the default head (ImageNet's 1000 unless the model says otherwise).
    pub num_classes: i64,
    /// Variable-path prefix of the classifier (`fc.`, `classifier.6.`): the rows of its
    /// `weight` are the classes, so a checkpoint's class count is read from there.
    pub head: &'static str,
    /// Builds the network under a var-store path, as the weights of its default entry expect.
    pub build: fn(&nn::Path, &BuildConfig) -> Box<dyn Classifier>,
    /// Builds the network with [`ArchOptions`] (input transform, auxiliary heads), for the
    /// architectures that have such options (GoogLeNet, Inception v3); `None` elsewhere.
    pub build_with: Option<BuildWith>,
    /// Prefixes of tensors a checkpoint may hold or lack without being another layout:
    /// auxiliary heads that torchvision saves but the registry's build leaves out (GoogLeNet's
    /// `aux1.`/`aux2.`). Loading ignores them when the model lacks them, and keeps them as
    /// initialised when the checkpoint does.
    pub optional: &'static [&'static str],
    /// Which input sides (at or above `min_input`) the network accepts, and what to say
    /// otherwise; almost every network accepts any.
    pub side_rule: Option<SideRule>,
    /// Weight of each auxiliary classifier's loss in training (GoogLeNet's paper: 0.3; Inception
    /// v3, as TensorFlow-Slim's training gives it: 0.4); 0 for networks without one.
    pub aux_weight: f64,
}

/// A builder taking [`ArchOptions`].
pub type BuildWith = fn(&nn::Path, &BuildConfig, ArchOptions) -> Box<dyn Classifier>;

/// A test of one input side, and the explanation for a side it refuses.
pub type SideRule = (fn(i64) -> bool, &'static str);

impl std::fmt::Debug for ModelSpec {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ModelSpec").field("name", &self.name).field("family", &self.family).finish()
    }
}

impl ModelSpec {
    /// The build configuration this architecture uses by default.
    pub fn default_config(&self) -> BuildConfig {
        BuildConfig { num_classes: self.num_classes, ..BuildConfig::default() }
    }
}

const LENET: &str = "LeCun et al., Gradient-Based Learning Applied to Document Recognition, Proc. IEEE 1998";
const ALEXNET: &str = "Krizhevsky et al., ImageNet Classification with Deep Convolutional Neural Networks, NIPS 2012";
const ZFNET: &str = "Zeiler & Fergus, Visualizing and Understanding Convolutional Networks, ECCV 2014";
const VGG: &str = "Simonyan & Zisserman, Very Deep Convolutional Networks for Large-Scale Image Recognition, ICLR 2015";
const RESNET: &str = "He et al., Deep Residual Learning for Image Recognition, CVPR 2016";
const WIDE: &str = "Zagoruyko & Komodakis, Wide Residual Networks, BMVC 2016";
const RESNEXT: &str = "Xie et al., Aggregated Residual Transformations for Deep Neural Networks, CVPR 2017";
const GOOGLENET: &str = "Szegedy et al., Going Deeper with Convolutions, CVPR 2015";
const INCEPTION_V3: &str = "Szegedy et al., Rethinking the Inception Architecture for Computer Vision, CVPR 2016";
const BN_INCEPTION: &str =
    "Ioffe & Szegedy, Batch Normalization: Accelerating Deep Network Training by Reducing Internal Covariate Shift, ICML 2015";
const INCEPTION_V4: &str =
    "Szegedy et al., Inception-v4, Inception-ResNet and the Impact of Residual Connections on Learning, AAAI 2017";
const DENSENET: &str = "Huang et al., Densely Connected Convolutional Networks, CVPR 2017";
const SQUEEZENET: &str =
    "Iandola et al., SqueezeNet: AlexNet-level accuracy with 50x fewer parameters and <0.5MB model size, arXiv 2016";
const MOBILENET_V2: &str = "Sandler et al., MobileNetV2: Inverted Residuals and Linear Bottlenecks, CVPR 2018";
const MOBILENET_V3: &str = "Howard et al., Searching for MobileNetV3, ICCV 2019";
const SHUFFLENET_V2: &str =
    "Ma et al., ShuffleNet V2: Practical Guidelines for Efficient CNN Architecture Design, ECCV 2018";
const XCEPTION: &str = "Chollet, Xception: Deep Learning with Depthwise Separable Convolutions, CVPR 2017";
const MOBILENET_V1: &str =
    "Howard et al., MobileNets: Efficient Convolutional Neural Networks for Mobile Vision Applications, arXiv 2017";
const SHUFFLENET_V1: &str =
    "Zhang et al., ShuffleNet: An Extremely Efficient Convolutional Neural Network for Mobile Devices, CVPR 2018";
const EFFICIENTNET_LITE: &str =
    "Tan & Le, EfficientNet: Rethinking Model Scaling for Convolutional Neural Networks, ICML 2019 (TensorFlow's Lite variants)";

/// A row of the table for a 3-channel ImageNet classifier.
const fn row(
    name: &'static str,
    family: &'static str,
    paper: &'static str,
    head: &'static str,
    size: i64,
    min_input: i64,
    build: fn(&nn::Path, &BuildConfig) -> Box<dyn Classifier>,
) -> ModelSpec {
    ModelSpec {
        name,
        family,
        paper,
        input_size: [3, size, size],
        min_input,
        num_classes: 1000,
        head,
        build,
        build_with: None,
        optional: &[],
        side_rule: None,
        aux_weight: 0.0,
    }
}

fn resnet(p: &nn::Path, b: &BuildConfig, cfg: ResNetConfig) -> Box<dyn Classifier> {
    Box::new(ResNet::new(p, &cfg, b))
}

fn vgg(p: &nn::Path, b: &BuildConfig, cfg: &[i64], bn: bool) -> Box<dyn Classifier> {
    Box::new(ClassicNet::new(p, &vgg::spec(cfg, bn), b))
}

fn mobilenet_v2(p: &nn::Path, b: &BuildConfig, cfg: mobilenet_v2::MobileNetV2Config) -> Box<dyn Classifier> {
    Box::new(mobilenet_v2::MobileNetV2::new(p, &cfg, b))
}

fn mobilenet_v3(p: &nn::Path, b: &BuildConfig, cfg: mobilenet_v3::MobileNetV3Config) -> Box<dyn Classifier> {
    Box::new(mobilenet_v3::MobileNetV3::new(p, &cfg, b))
}

fn shufflenet_v2(p: &nn::Path, b: &BuildConfig, cfg: shufflenet_v2::ShuffleNetV2Config) -> Box<dyn Classifier> {
    Box::new(shufflenet_v2::ShuffleNetV2::new(p, &cfg, b))
}

fn efficientnet_lite(p: &nn::Path, b: &BuildConfig, variant: usize) -> Box<dyn Classifier> {
    Box::new(efficientnet_lite::EfficientNetLite::new(p, &efficientnet_lite::VARIANTS[variant], b))
}

fn mobilenet_v1(p: &nn::Path, b: &BuildConfig, width_mult: f64) -> Box<dyn Classifier> {
    super::mobilenet_v1::build(p, b, width_mult)
}

fn shufflenet_v1(p: &nn::Path, b: &BuildConfig, groups: i64, width: f64) -> Box<dyn Classifier> {
    super::shufflenet_v1::build(p, b, groups, width)
}

#[rustfmt::skip]
fn table() -> Vec<ModelSpec> {
    vec![
        ModelSpec { input_size: [1, 32, 32], num_classes: 10, ..row("lenet5", "LeNet", LENET, "classifier.4.", 32, 32, |p, b| Box::new(ClassicNet::new(p, &lenet::spec(), b))) },
        row("alexnet", "AlexNet", ALEXNET, "classifier.6.", 224, 63, |p, b| Box::new(ClassicNet::new(p, &alexnet::spec(), b))),
        row("alexnet_lrn", "AlexNet", ALEXNET, "classifier.6.", 227, 67, |p, b| Box::new(ClassicNet::new(p, &alexnet::spec_lrn(), b))),
        row("zfnet", "ZFNet", ZFNET, "classifier.6.", 224, 35, |p, b| Box::new(ClassicNet::new(p, &zfnet::spec(), b))),
        row("vgg11", "VGG", VGG, "classifier.6.", 224, 32, |p, b| vgg(p, b, vgg::VGG11, false)),
        row("vgg11_bn", "VGG", VGG, "classifier.6.", 224, 32, |p, b| vgg(p, b, vgg::VGG11, true)),
        row("vgg13", "VGG", VGG, "classifier.6.", 224, 32, |p, b| vgg(p, b, vgg::VGG13, false)),
        row("vgg13_bn", "VGG", VGG, "classifier.6.", 224, 32, |p, b| vgg(p, b, vgg::VGG13, true)),
        row("vgg16", "VGG", VGG, "classifier.6.", 224, 32, |p, b| vgg(p, b, vgg::VGG16, false)),
        row("vgg16_bn", "VGG", VGG, "classifier.6.", 224, 32, |p, b| vgg(p, b, vgg::VGG16, true)),
        row("vgg19", "VGG", VGG, "classifier.6.", 224, 32, |p, b| vgg(p, b, vgg::VGG19, false)),
        row("vgg19_bn", "VGG", VGG, "classifier.6.", 224, 32, |p, b| vgg(p, b, vgg::VGG19, true)),
        row("resnet18", "ResNet", RESNET, "fc.", 224, 32, |p, b| resnet(p, b, ResNetConfig::new(Basic, [2, 2, 2, 2]))),
        row("resnet34", "ResNet", RESNET, "fc.", 224, 32, |p, b| resnet(p, b, ResNetConfig::new(Basic, [3, 4, 6, 3]))),
        row("resnet50", "ResNet", RESNET, "fc.", 224, 32, |p, b| resnet(p, b, ResNetConfig::new(Bottleneck, [3, 4, 6, 3]))),
        row("resnet101", "ResNet", RESNET, "fc.", 224, 32, |p, b| resnet(p, b, ResNetConfig::new(Bottleneck, [3, 4, 23, 3]))),
        row("resnet152", "ResNet", RESNET, "fc.", 224, 32, |p, b| resnet(p, b, ResNetConfig::new(Bottleneck, [3, 8, 36, 3]))),
        row("wide_resnet50_2", "Wide ResNet", WIDE, "fc.", 224, 32, |p, b| resnet(p, b, ResNetConfig::new(Bottleneck, [3, 4, 6, 3]).grouped(1, 128))),
        row("wide_resnet101_2", "Wide ResNet", WIDE, "fc.", 224, 32, |p, b| resnet(p, b, ResNetConfig::new(Bottleneck, [3, 4, 23, 3]).grouped(1, 128))),
        row("resnext50_32x4d", "ResNeXt", RESNEXT, "fc.", 224, 32, |p, b| resnet(p, b, ResNetConfig::new(Bottleneck, [3, 4, 6, 3]).grouped(32, 4))),
        row("resnext101_32x8d", "ResNeXt", RESNEXT, "fc.", 224, 32, |p, b| resnet(p, b, ResNetConfig::new(Bottleneck, [3, 4, 23, 3]).grouped(32, 8))),
        row("resnext101_64x4d", "ResNeXt", RESNEXT, "fc.", 224, 32, |p, b| resnet(p, b, ResNetConfig::new(Bottleneck, [3, 4, 23, 3]).grouped(64, 4))),
        // -- the other torchvision families --
        ModelSpec { build_with: Some(super::googlenet::build_with), optional: &super::googlenet::AUX_PREFIXES, aux_weight: 0.3, ..row("googlenet", "GoogLeNet", GOOGLENET, "fc.", 224, 15, super::googlenet::build) },
        ModelSpec { build_with: Some(super::inception_v3::build_with), aux_weight: 0.4, ..row("inception_v3", "Inception", INCEPTION_V3, "fc.", 299, 75, super::inception_v3::build) },
        row("densenet121", "DenseNet", DENSENET, "classifier.", 224, 29, |p, b| super::densenet::build(p, b, super::densenet::DENSENET121)),
        row("densenet161", "DenseNet", DENSENET, "classifier.", 224, 29, |p, b| super::densenet::build(p, b, super::densenet::DENSENET161)),
        row("densenet169", "DenseNet", DENSENET, "classifier.", 224, 29, |p, b| super::densenet::build(p, b, super::densenet::DENSENET169)),
        row("densenet201", "DenseNet", DENSENET, "classifier.", 224, 29, |p, b| super::densenet::build(p, b, super::densenet::DENSENET201)),
        row("squeezenet1_0", "SqueezeNet", SQUEEZENET, "classifier.1.", 224, 21, |p, b| super::squeezenet::build(p, b, super::squeezenet::SQUEEZENET1_0)),
        row("squeezenet1_1", "SqueezeNet", SQUEEZENET, "classifier.1.", 224, 17, |p, b| super::squeezenet::build(p, b, super::squeezenet::SQUEEZENET1_1)),
        row("mobilenet_v2", "MobileNet v2", MOBILENET_V2, "classifier.1.", 224, 32, |p, b| mobilenet_v2(p, b, mobilenet_v2::MobileNetV2Config::new(1.0))),
        row("mobilenet_v3_large", "MobileNet v3", MOBILENET_V3, "classifier.3.", 224, 32, |p, b| mobilenet_v3(p, b, mobilenet_v3::MobileNetV3Config::large(1.0))),
        row("mobilenet_v3_small", "MobileNet v3", MOBILENET_V3, "classifier.3.", 224, 32, |p, b| mobilenet_v3(p, b, mobilenet_v3::MobileNetV3Config::small(1.0))),
        row("shufflenet_v2_x0_5", "ShuffleNet v2", SHUFFLENET_V2, "fc.", 224, 32, |p, b| shufflenet_v2(p, b, shufflenet_v2::variants::X0_5)),
        row("shufflenet_v2_x1_0", "ShuffleNet v2", SHUFFLENET_V2, "fc.", 224, 32, |p, b| shufflenet_v2(p, b, shufflenet_v2::variants::X1_0)),
        row("shufflenet_v2_x1_5", "ShuffleNet v2", SHUFFLENET_V2, "fc.", 224, 32, |p, b| shufflenet_v2(p, b, shufflenet_v2::variants::X1_5)),
        row("shufflenet_v2_x2_0", "ShuffleNet v2", SHUFFLENET_V2, "fc.", 224, 32, |p, b| shufflenet_v2(p, b, shufflenet_v2::variants::X2_0)),
        // -- beyond torchvision --
        row("zfnet_pytorchcv", "ZFNet", ZFNET, "classifier.6.", 224, 47, |p, b| Box::new(ClassicNet::new(p, &zfnet::spec_pytorchcv(), b))),
        row("mobilenet_v1_relu", "MobileNet v1", MOBILENET_V1, "classifier.", 224, 1, |p, b| super::mobilenet_v1::build_relu(p, b, 1.0)),
        ModelSpec { side_rule: Some((super::bninception::side_fits, super::bninception::SIDE_RULE)), ..row("bninception", "BN-Inception", BN_INCEPTION, "last_linear.", 224, 31, super::bninception::build) },
        row("inception_v4", "Inception v4", INCEPTION_V4, "last_linear.", 299, 75, super::inception_v4::build),
        row("inception_resnet_v1", "Inception-ResNet", INCEPTION_V4, "output.fc2.", 299, 75, super::inception_resnet::build_v1),
        row("inception_resnet_v2", "Inception-ResNet", INCEPTION_V4, "classif.", 299, 75, super::inception_resnet::build_v2),
        row("xception", "Xception", XCEPTION, "fc.", 299, 7, super::xception::build),
        row("mobilenet_v1", "MobileNet v1", MOBILENET_V1, "classifier.", 224, 1, |p, b| mobilenet_v1(p, b, 1.0)),
        row("mobilenet_v1_x0_75", "MobileNet v1", MOBILENET_V1, "classifier.", 224, 1, |p, b| mobilenet_v1(p, b, 0.75)),
        row("mobilenet_v1_x0_5", "MobileNet v1", MOBILENET_V1, "classifier.", 224, 1, |p, b| mobilenet_v1(p, b, 0.5)),
        row("mobilenet_v1_x0_25", "MobileNet v1", MOBILENET_V1, "classifier.", 224, 1, |p, b| mobilenet_v1(p, b, 0.25)),
        // ShuffleNet v1 (groups, width): Table 2's 1x at every g; 0.25x, 0.5x and pytorchcv's 0.75x at g = 1, 3;
        // Tables 4-5's 1.5x, 2x at g = 3. (0.5x, 0.25x at g = 2, 4, 8 do not divide into groups at int(c*s).)
        row("shufflenet_v1_g1_x1_0", "ShuffleNet v1", SHUFFLENET_V1, "output.", 224, 1, |p, b| shufflenet_v1(p, b, 1, 1.0)),
        row("shufflenet_v1_g2_x1_0", "ShuffleNet v1", SHUFFLENET_V1, "output.", 224, 1, |p, b| shufflenet_v1(p, b, 2, 1.0)),
        row("shufflenet_v1_g3_x1_0", "ShuffleNet v1", SHUFFLENET_V1, "output.", 224, 1, |p, b| shufflenet_v1(p, b, 3, 1.0)),
        row("shufflenet_v1_g4_x1_0", "ShuffleNet v1", SHUFFLENET_V1, "output.", 224, 1, |p, b| shufflenet_v1(p, b, 4, 1.0)),
        row("shufflenet_v1_g8_x1_0", "ShuffleNet v1", SHUFFLENET_V1, "output.", 224, 1, |p, b| shufflenet_v1(p, b, 8, 1.0)),
        row("shufflenet_v1_g1_x0_25", "ShuffleNet v1", SHUFFLENET_V1, "output.", 224, 1, |p, b| shufflenet_v1(p, b, 1, 0.25)),
        row("shufflenet_v1_g1_x0_5", "ShuffleNet v1", SHUFFLENET_V1, "output.", 224, 1, |p, b| shufflenet_v1(p, b, 1, 0.5)),
        row("shufflenet_v1_g1_x0_75", "ShuffleNet v1", SHUFFLENET_V1, "output.", 224, 1, |p, b| shufflenet_v1(p, b, 1, 0.75)),
        row("shufflenet_v1_g3_x0_25", "ShuffleNet v1", SHUFFLENET_V1, "output.", 224, 1, |p, b| shufflenet_v1(p, b, 3, 0.25)),
        row("shufflenet_v1_g3_x0_5", "ShuffleNet v1", SHUFFLENET_V1, "output.", 224, 1, |p, b| shufflenet_v1(p, b, 3, 0.5)),
        row("shufflenet_v1_g3_x0_75", "ShuffleNet v1", SHUFFLENET_V1, "output.", 224, 1, |p, b| shufflenet_v1(p, b, 3, 0.75)),
        row("shufflenet_v1_g3_x1_5", "ShuffleNet v1", SHUFFLENET_V1, "output.", 224, 1, |p, b| shufflenet_v1(p, b, 3, 1.5)),
        row("shufflenet_v1_g3_x2_0", "ShuffleNet v1", SHUFFLENET_V1, "output.", 224, 1, |p, b| shufflenet_v1(p, b, 3, 2.0)),
        row("efficientnet_lite0", "EfficientNet-Lite", EFFICIENTNET_LITE, "_fc.", 224, 32, |p, b| efficientnet_lite(p, b, 0)),
        row("efficientnet_lite1", "EfficientNet-Lite", EFFICIENTNET_LITE, "_fc.", 240, 32, |p, b| efficientnet_lite(p, b, 1)),
        row("efficientnet_lite2", "EfficientNet-Lite", EFFICIENTNET_LITE, "_fc.", 260, 32, |p, b| efficientnet_lite(p, b, 2)),
        row("efficientnet_lite3", "EfficientNet-Lite", EFFICIENTNET_LITE, "_fc.", 280, 32, |p, b| efficientnet_lite(p, b, 3)),
        row("efficientnet_lite4", "EfficientNet-Lite", EFFICIENTNET_LITE, "_fc.", 300, 32, |p, b| efficientnet_lite(p, b, 4)),
    ]
}

/// Every registered architecture, in table order.
pub fn registry() -> &'static [ModelSpec] {
    static TABLE: OnceLock<Vec<ModelSpec>> = OnceLock::new();
    TABLE.get_or_init(table)
}

/// timm's names for zoo's architectures where they differ: `(timm, zoo, None)` where zoo reads
/// the files timm publishes under that name (a manifest entry carries timm's layout), and
/// `(timm, zoo, Some(why))` where it does not, so the name is refused, never silently aliased.
pub const TIMM_NAMES: &[(&str, &str, Option<&str>)] = &[
    ("legacy_xception", "xception", None),
    ("mobilenetv1_100", "mobilenet_v1", None),
    (
        "mobilenetv2_100",
        "mobilenet_v2",
        Some("timm's files use its EfficientNet builder's keys (conv_stem, blocks.S.B.conv_pw/conv_dw/conv_pwl), zoo's mobilenet_v2 torchvision's (features.N.conv.M): use mobilenet_v2 with torchvision's weights (zoo weights list 'mobilenet_v2*')"),
    ),
    (
        "mobilenetv3_large_100",
        "mobilenet_v3_large",
        Some("timm's files use its EfficientNet builder's keys (conv_stem, blocks.S.B), zoo's mobilenet_v3_large torchvision's (features.N.block.M): use mobilenet_v3_large with torchvision's weights"),
    ),
    (
        "mobilenetv3_small_100",
        "mobilenet_v3_small",
        Some("timm's files use its EfficientNet builder's keys (conv_stem, blocks.S.B), zoo's mobilenet_v3_small torchvision's (features.N.block.M): use mobilenet_v3_small with torchvision's weights"),
    ),
];

/// timm's EfficientNet-Lite names (`tf_efficientnet_lite0` to `lite4`): zoo's ports read
/// efficientnet-lite-pytorch's files, not timm's.
const TIMM_LITE: &str = "timm's tf_efficientnet_lite files use its EfficientNet builder's keys (conv_stem, blocks.S.B) and TensorFlow's 'same' padding; zoo's efficientnet_lite reads efficientnet-lite-pytorch's files (_conv_stem, _blocks.N), the manifest's efficientnet_lite entries";

/// The zoo name for a timm name (`legacy_xception` → `xception`), or the reason zoo cannot load
/// what timm publishes under it; `None` for names that are not timm's own.
pub fn timm_name(name: &str) -> Option<Result<&'static str>> {
    let key = name.trim().to_ascii_lowercase();
    if let Some(&(timm, zoo, why)) = TIMM_NAMES.iter().find(|(t, _, _)| *t == key) {
        return Some(match why {
            None => Ok(zoo),
            Some(why) => {
                Err(anyhow::anyhow!("'{timm}' is timm's name for zoo's {zoo}, whose files zoo cannot read: {why}"))
            }
        });
    }
    let lite = key.strip_prefix("tf_efficientnet_lite").filter(|n| matches!(*n, "0" | "1" | "2" | "3" | "4"))?;
    Some(Err(anyhow::anyhow!(
        "'{key}' is timm's name for zoo's efficientnet_lite{lite}, whose files zoo cannot read: {TIMM_LITE}"
    )))
}

/// `ARCH[.TAG]` with a timm architecture name replaced by zoo's (`legacy_xception.tf_in1k` →
/// `xception.tf_in1k`); other names unchanged; a timm name zoo cannot load fails, saying why.
pub fn canonical_name(name: &str) -> Result<String> {
    let (arch, tag) = name.split_once('.').map_or((name, None), |(a, t)| (a, Some(t)));
    match timm_name(arch) {
        None => Ok(name.to_string()),
        Some(zoo) => Ok(match tag {
            Some(t) => format!("{}.{t}", zoo?),
            None => zoo?.to_string(),
        }),
    }
}

/// Looks a name up, case-insensitively (timm's names too, see [`TIMM_NAMES`]); an unknown name
/// fails with the closest names.
pub fn find(name: &str) -> Result<&'static ModelSpec> {
    let key = name.trim().to_ascii_lowercase();
    if let Some(spec) = registry().iter().find(|s| s.name == key) {
        return Ok(spec);
    }
    if let Some(zoo) = timm_name(&key) {
        let zoo = zoo?;
        return registry().iter().find(|s| s.name == zoo).ok_or_else(|| anyhow::anyhow!("{zoo} is not registered"));
    }
    let mut scored: Vec<(f64, &str)> =
        registry().iter().map(|s| (strsim::normalized_damerau_levenshtein(&key, s.name), s.name)).collect();
    scored.sort_by(|a, b| b.0.total_cmp(&a.0));
    let close: Vec<&str> = scored.iter().take(3).filter(|(score, _)| *score > 0.4).map(|(_, n)| *n).collect();
    if close.is_empty() {
        bail!("unknown model '{name}': `zoo list` shows every model zoo has");
    }
    bail!("unknown model '{name}'; did you mean {}? (`zoo list` shows them all)", close.join(", "))
}
