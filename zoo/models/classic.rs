//! The pre-2014 plan shared by LeNet-5, AlexNet, ZFNet and VGG: a `features` stack of
//! convolutions and pools, an optional adaptive pool, and a `classifier` of fully connected
//! layers. Each family's file holds only its layer table; this file builds and runs it, with
//! torchvision's paths (`features.N`, `avgpool`, `classifier.N`).
use super::{BuildConfig, Classifier, FeatureInfo};
use crate::nn::trace;
use crate::nn::{
    path_of, Act, Activation, AdaptiveAvgPool2d, BatchNorm2d, Conv2d, ConvOpts, Dropout, HeadLinear, Linear,
    LocalResponseNorm, ModuleT, Pool2d, Sequential,
};
use tch::{nn, Tensor};

/// One entry of a `features` table.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum L {
    /// Convolution: out channels, kernel, stride, padding, groups.
    Conv(i64, i64, i64, i64, i64),
    BatchNorm,
    Relu,
    /// AlexNet's local response normalisation: size, alpha, beta, k.
    Lrn(i64, f64, f64, f64),
    /// Max pooling: kernel, stride, padding.
    MaxPool(i64, i64, i64),
    /// Max pooling that rounds its output size up (PyTorch's `ceil_mode=True`, Caffe's rule):
    /// kernel, stride, padding. The last window may overhang the input.
    MaxPoolCeil(i64, i64, i64),
}

/// Where the classifier's dropout layers sit relative to each hidden linear layer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DropoutAt {
    /// Before it (AlexNet: Dropout, Linear, ReLU).
    Before,
    /// After its ReLU (VGG: Linear, ReLU, Dropout).
    After,
    /// No dropout (LeNet-5).
    Never,
}

/// A whole network as data.
#[derive(Debug, Clone, PartialEq)]
pub struct ClassicSpec {
    pub in_channels: i64,
    pub features: Vec<L>,
    /// Output side of `avgpool` (torchvision's `AdaptiveAvgPool2d`), which fixes the classifier's
    /// input width whatever the image size.
    pub avgpool: i64,
    /// Hidden fully connected widths (4096, 4096 for AlexNet and VGG).
    pub hidden: &'static [i64],
    pub dropout: DropoutAt,
    pub dropout_rate: f64,
}

/// A network built from a [`ClassicSpec`].
#[derive(Debug)]
pub struct ClassicNet {
    features: Sequential,
    avgpool: AdaptiveAvgPool2d,
    hidden: Sequential,
    /// `classifier.N`, after the hidden layers.
    head: HeadLinear,
    num_features: i64,
    stages: Vec<FeatureInfo>,
}

impl ClassicNet {
    pub fn new(p: &nn::Path, spec: &ClassicSpec, build: &BuildConfig) -> Self {
        let fp = p / "features";
        let mut features = Sequential::new(&fp);
        let (mut c, mut reduction) = (spec.in_channels, 1);
        let mut stages = Vec::new();
        for (i, l) in spec.features.iter().enumerate() {
            let lp = &fp / i;
            match *l {
                L::Conv(out, k, s, pad, g) => {
                    let opts = ConvOpts::default().stride(s).padding(pad).groups(g);
                    features.push(Conv2d::new(&lp, c, out, k, opts));
                    c = out;
                    reduction *= s;
                }
                L::BatchNorm => {
                    features.push(BatchNorm2d::new(&lp, c));
                }
                L::Relu => {
                    features.push(Activation::inplace(&lp, Act::Relu));
                }
                L::Lrn(size, alpha, beta, k) => {
                    features.push(LocalResponseNorm::new(&lp, size, alpha, beta, k));
                }
                L::MaxPool(k, s, pad) | L::MaxPoolCeil(k, s, pad) => {
                    let ceil = matches!(l, L::MaxPoolCeil(..));
                    features.push(Pool2d::max(&lp, k, s).padding(pad).ceil_mode(ceil));
                    reduction *= s;
                    stages.push(FeatureInfo::new(path_of(&lp), c, reduction));
                }
            }
        }
        let avgpool = AdaptiveAvgPool2d::new(&(p / "avgpool"), spec.avgpool);
        let mut width = c * spec.avgpool * spec.avgpool;
        let cp = p / "classifier";
        let mut hidden = Sequential::named(&cp, "Classifier");
        let rate = build.drop_rate.unwrap_or(spec.dropout_rate);
        let mut idx = 0;
        let mut next = || {
            idx += 1;
            &cp / (idx - 1)
        };
        for &h in spec.hidden {
            if spec.dropout == DropoutAt::Before {
                hidden.push(Dropout::new(&next(), rate));
            }
            hidden.push(Linear::new(&next(), width, h));
            hidden.push(Activation::inplace(&next(), Act::Relu));
            if spec.dropout == DropoutAt::After {
                hidden.push(Dropout::new(&next(), rate));
            }
            width = h;
        }
        let head = HeadLinear::new(p, &format!("classifier.{}", hidden.len()), width, build.num_classes);
        ClassicNet { features, avgpool, hidden, head, num_features: width, stages }
    }
}

classifier_module!(ClassicNet);

impl Classifier for ClassicNet {
    fn forward_features(&self, xs: &Tensor, train: bool) -> Tensor {
        self.features.forward_t(xs, train)
    }

    /// `pre_logits` is the last hidden layer after its ReLU: FC7 for AlexNet, ZFNet and VGG.
    fn forward_head(&self, xs: &Tensor, train: bool, pre_logits: bool) -> Tensor {
        let xs = self.avgpool.forward_t(xs, train).flatten(1, -1);
        let xs = self.hidden.forward_t(&xs, train);
        let xs = trace::point("pre_logits", trace::point("fc7", xs));
        if pre_logits {
            return xs;
        }
        self.head.forward(xs, train)
    }

    fn num_features(&self) -> i64 {
        self.num_features
    }

    fn head(&self) -> &dyn crate::nn::Head {
        &self.head
    }

    fn head_mut(&mut self) -> &mut dyn crate::nn::Head {
        &mut self.head
    }

    fn feature_info(&self) -> Vec<FeatureInfo> {
        self.stages.clone()
    }
}
