//! A zoo backbone as a tch module: MobileNet v3 Small without its head (pooled features) in
//! `nn::seq_t()` in front of a tch linear layer, trained for a few steps on random data.
//!
//! ```text
//! cargo run --release --example compose
//! ```
use anyhow::Result;
use tch::nn::{self, OptimizerConfig};
use tch::{Device, Kind, Tensor};
use zoo::models::{BuildConfig, Model};

fn main() -> Result<()> {
    tch::manual_seed(0);
    // num_classes 0: no head, forward_t gives the pooled features.
    let backbone = Model::new("mobilenet_v3_small", BuildConfig { num_classes: 0, drop_rate: None }, Device::Cpu)?;
    let width = backbone.net.num_features();
    let head_vs = nn::VarStore::new(Device::Cpu);
    let head = nn::linear(head_vs.root() / "head", width, 3, Default::default());
    let net = nn::seq_t().add(backbone).add(head);

    let xs = Tensor::randn([8, 3, 96, 96], (Kind::Float, Device::Cpu));
    let ys = Tensor::from_slice(&[0i64, 1, 2, 0, 1, 2, 0, 1]);
    // Only the tch head trains: its own var store is the optimiser's.
    let mut opt = nn::Adam::default().build(&head_vs, 1e-2)?;
    for step in 0..5 {
        let loss = xs.apply_t(&net, false).cross_entropy_for_logits(&ys);
        opt.backward_step(&loss);
        println!("step {step}: loss {:.4}", loss.double_value(&[]));
    }
    println!("output {:?}", xs.apply_t(&net, false).size());
    Ok(())
}
