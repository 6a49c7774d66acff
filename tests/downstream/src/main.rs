//! zoo as a dependency: a model built and loaded from a checkpoint, applied as a tch module, and
//! used as the backbone of an `nn::seq_t()`.
use anyhow::Result;
use tch::nn;
use tch::{Device, Kind, Tensor};
use zoo::models::{BuildConfig, Model};

fn main() -> Result<()> {
    let _g = tch::no_grad_guard();
    let weights = std::env::args().nth(1).expect("usage: zoo-downstream LENET5_CHECKPOINT");
    let mut model = Model::new("lenet5", BuildConfig { num_classes: 10, drop_rate: None }, Device::Cpu)?;
    model.load_file(std::path::Path::new(&weights))?;
    let xs = Tensor::randn([2, 1, 32, 32], (Kind::Float, Device::Cpu));
    let logits = xs.apply_t(&model, false);
    assert!(logits.allclose(&model.predict(&xs)?, 1e-6, 1e-6, false));
    println!("apply_t: {:?}", logits.size());

    let backbone = Model::new("resnet18", BuildConfig { num_classes: 0, drop_rate: None }, Device::Cpu)?;
    let vs = nn::VarStore::new(Device::Cpu);
    let head = nn::linear(vs.root() / "head", backbone.net.num_features(), 5, Default::default());
    let net = nn::seq_t().add(backbone).add(head);
    let ys = Tensor::randn([2, 3, 64, 64], (Kind::Float, Device::Cpu)).apply_t(&net, false);
    println!("seq_t: {:?}", ys.size());
    Ok(())
}
