//! Optimisers, learning-rate schedules and the loss scaler of mixed precision.
//!
//! SGD (momentum, Nesterov) and AdamW are written out as PyTorch's `torch.optim` computes them
//! (same order of operations, float32 state), over an explicit list of parameters, each with its
//! own learning-rate scale (discriminative fine-tuning) and a flag saying whether weight decay
//! applies: it does not to biases and normalisation weights (every 1-D parameter), as timm and
//! torchvision's references exclude them. Their state is plain tensors, saved with the resume
//! checkpoint.
use crate::checkpoint::StateDict;
use anyhow::{bail, Result};
use serde::{Deserialize, Serialize};
use tch::{Kind, Tensor};

/// Which optimiser, with its hyper-parameters.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(tag = "name", rename_all = "lowercase")]
pub enum OptimizerKind {
    /// `torch.optim.SGD(momentum, nesterov)`, dampening 0; weight decay added to the gradient.
    Sgd { momentum: f64, nesterov: bool },
    /// `torch.optim.AdamW(betas, eps)`: decoupled weight decay.
    Adamw { beta1: f64, beta2: f64, eps: f64 },
}

impl OptimizerKind {
    /// SGD as the ImageNet reference recipes run it (torchvision, timm): momentum 0.9, no
    /// Nesterov.
    pub const SGD: OptimizerKind = OptimizerKind::Sgd { momentum: 0.9, nesterov: false };
    /// AdamW with `torch.optim.AdamW`'s betas and eps.
    pub const ADAMW: OptimizerKind = OptimizerKind::Adamw { beta1: 0.9, beta2: 0.999, eps: 1e-8 };

    /// Short name for files and messages.
    pub fn name(&self) -> &'static str {
        match self {
            OptimizerKind::Sgd { .. } => "sgd",
            OptimizerKind::Adamw { .. } => "adamw",
        }
    }
}

/// One optimised variable.
#[derive(Debug)]
pub struct Param {
    /// Var-store path.
    pub name: String,
    /// The variable itself (shares storage with the model's).
    pub tensor: Tensor,
    /// Multiplies the learning rate (backbone vs head).
    pub lr_scale: f64,
    /// Whether weight decay applies.
    pub decay: bool,
}

/// SGD or AdamW over explicit parameters.
#[derive(Debug)]
pub struct Optimizer {
    pub kind: OptimizerKind,
    pub params: Vec<Param>,
    pub weight_decay: f64,
    /// Updates applied so far (AdamW's bias correction uses it).
    pub steps: u64,
    /// Per parameter: SGD `[momentum_buffer]`, AdamW `[exp_avg, exp_avg_sq]`.
    state: Vec<Vec<Tensor>>,
}

impl Optimizer {
    /// A fresh optimiser (zero state).
    pub fn new(kind: OptimizerKind, params: Vec<Param>, weight_decay: f64) -> Self {
        let state = params
            .iter()
            .map(|p| {
                let n = match kind {
                    OptimizerKind::Sgd { momentum, .. } if momentum > 0.0 => 1,
                    OptimizerKind::Sgd { .. } => 0,
                    OptimizerKind::Adamw { .. } => 2,
                };
                (0..n).map(|_| p.tensor.zeros_like().detach()).collect()
            })
            .collect();
        Optimizer { kind, params, weight_decay, steps: 0, state }
    }

    /// Zeroes every gradient.
    pub fn zero_grad(&mut self) {
        for p in &mut self.params {
            p.tensor.zero_grad();
        }
    }

    /// Whether every gradient is finite (one device sync).
    pub fn grads_finite(&self) -> bool {
        let mut bad: Option<Tensor> = None;
        for p in &self.params {
            let g = p.tensor.grad();
            if g.defined() {
                let n = g.isfinite().logical_not().sum(Kind::Int64);
                bad = Some(match bad {
                    Some(b) => b + n,
                    None => n,
                });
            }
        }
        bad.is_none_or(|b| b.int64_value(&[]) == 0)
    }

    /// One update at learning rate `lr` with gradients divided by `grad_scale` first.
    /// Parameters without a gradient are left alone (as PyTorch does).
    pub fn step(&mut self, lr: f64, grad_scale: f64) {
        self.steps += 1;
        let t = self.steps as i32;
        let wd = self.weight_decay;
        tch::no_grad(|| {
            for (p, state) in self.params.iter_mut().zip(self.state.iter_mut()) {
                let g = p.tensor.grad();
                if !g.defined() {
                    continue;
                }
                // Out of place: the parameter's .grad is never modified.
                let g = if grad_scale != 1.0 { g / grad_scale } else { g.detach() };
                let lr = lr * p.lr_scale;
                match self.kind {
                    OptimizerKind::Sgd { momentum, nesterov } => {
                        let mut g = if p.decay && wd != 0.0 { &g + &p.tensor * wd } else { g };
                        if momentum > 0.0 {
                            let buf = &mut state[0];
                            let _ = buf.g_mul_scalar_(momentum).g_add_(&g);
                            g = if nesterov { g + &*buf * momentum } else { buf.shallow_clone() };
                        }
                        let _ = p.tensor.g_add_(&(g * -lr));
                    }
                    OptimizerKind::Adamw { beta1, beta2, eps } => {
                        if p.decay && wd != 0.0 {
                            let _ = p.tensor.g_mul_scalar_(1.0 - lr * wd);
                        }
                        let _ = state[0].g_mul_scalar_(beta1).g_add_(&(&g * (1.0 - beta1)));
                        let _ = state[1].g_mul_scalar_(beta2).g_add_(&(&g * &g * (1.0 - beta2)));
                        let bc1 = 1.0 - beta1.powi(t);
                        let bc2 = 1.0 - beta2.powi(t);
                        let denom = state[1].sqrt() / bc2.sqrt() + eps;
                        let _ = p.tensor.g_add_(&(&state[0] / denom * (-lr / bc1)));
                    }
                }
            }
        });
    }

    /// The state as named tensors (`<buffer>.<param>`), for the resume checkpoint.
    pub fn state_entries(&self) -> Vec<(String, Tensor)> {
        let names: &[&str] = match self.kind {
            OptimizerKind::Sgd { .. } => &["momentum_buffer"],
            OptimizerKind::Adamw { .. } => &["exp_avg", "exp_avg_sq"],
        };
        let mut out = Vec::new();
        for (p, state) in self.params.iter().zip(&self.state) {
            for (n, t) in names.iter().zip(state) {
                out.push((format!("{n}.{}", p.name), t.shallow_clone()));
            }
        }
        out
    }

    /// Restores [`Optimizer::state_entries`] written by the same configuration.
    pub fn load_state(&mut self, sd: &StateDict, steps: u64) -> Result<()> {
        let entries = self.state_entries();
        let mut missing = Vec::new();
        for (name, mut t) in entries {
            match sd.get(&name) {
                Some(src) if src.size() == t.size() => {
                    tch::no_grad(|| t.copy_(&src.to_device(t.device()).to_kind(t.kind())));
                }
                Some(src) => bail!("optimizer state {name}: saved shape {:?}, expected {:?}", src.size(), t.size()),
                None => missing.push(name),
            }
        }
        if !missing.is_empty() {
            bail!(
                "the resume file lacks optimizer state for {} parameter buffer(s) (first: {}): was it written with \
                 another --optimizer or --freeze?",
                missing.len(),
                missing[0]
            );
        }
        self.steps = steps;
        Ok(())
    }
}

/// Learning-rate schedule over optimiser steps.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(tag = "name", rename_all = "lowercase")]
pub enum Schedule {
    /// Linear warm-up from 0 over `warmup_epochs`, then half a cosine down to `min_lr`.
    Cosine { warmup_epochs: f64, min_lr: f64 },
    /// Multiply by `gamma` every `step_size` epochs (after the warm-up).
    Step { warmup_epochs: f64, step_size: usize, gamma: f64 },
    /// Constant after the warm-up.
    Constant { warmup_epochs: f64 },
}

impl Schedule {
    /// Cosine to 0, no warm-up.
    pub const COSINE: Schedule = Schedule::Cosine { warmup_epochs: 0.0, min_lr: 0.0 };
    /// torchvision's step recipe: a tenth every 30 epochs, no warm-up.
    pub const STEP: Schedule = Schedule::Step { warmup_epochs: 0.0, step_size: 30, gamma: 0.1 };
    /// Constant, no warm-up.
    pub const CONSTANT: Schedule = Schedule::Constant { warmup_epochs: 0.0 };

    /// Short name for files and messages.
    pub fn name(&self) -> &'static str {
        match self {
            Schedule::Cosine { .. } => "cosine",
            Schedule::Step { .. } => "step",
            Schedule::Constant { .. } => "constant",
        }
    }

    /// Epochs of linear warm-up (fractions allowed).
    pub const fn warmup_epochs(&self) -> f64 {
        match *self {
            Schedule::Cosine { warmup_epochs, .. }
            | Schedule::Step { warmup_epochs, .. }
            | Schedule::Constant { warmup_epochs } => warmup_epochs,
        }
    }

    /// The learning rate of update `step` (0-based) of a run of `epochs` epochs of
    /// `steps_per_epoch` updates, for base rate `base`.
    pub fn lr(&self, base: f64, step: u64, steps_per_epoch: u64, epochs: usize) -> f64 {
        let spe = steps_per_epoch.max(1) as f64;
        let total = (epochs as f64 * spe).max(1.0);
        let s = step as f64;
        let warm = (self.warmup_epochs() * spe).round();
        if s < warm {
            return base * (s + 1.0) / (warm + 1.0);
        }
        match *self {
            Schedule::Cosine { min_lr, .. } => {
                let progress = ((s - warm) / (total - warm).max(1.0)).clamp(0.0, 1.0);
                min_lr + (base - min_lr) * 0.5 * (1.0 + (std::f64::consts::PI * progress).cos())
            }
            Schedule::Step { step_size, gamma, .. } => {
                let epoch = (s / spe).floor() as i32;
                base * gamma.powi(epoch / step_size.max(1) as i32)
            }
            Schedule::Constant { .. } => base,
        }
    }
}

/// `--optimizer sgd|adamw`: each name gives its constant ([`OptimizerKind::SGD`],
/// [`OptimizerKind::ADAMW`]), whose hyper-parameters the command line then sets.
#[cfg(feature = "cli")]
impl clap::ValueEnum for OptimizerKind {
    fn value_variants<'a>() -> &'a [Self] {
        &[OptimizerKind::SGD, OptimizerKind::ADAMW]
    }

    fn to_possible_value(&self) -> Option<clap::builder::PossibleValue> {
        Some(clap::builder::PossibleValue::new(self.name()))
    }
}

/// `--schedule cosine|step|constant`: each name gives its constant ([`Schedule::COSINE`],
/// [`Schedule::STEP`], [`Schedule::CONSTANT`]), whose parameters the command line then sets.
#[cfg(feature = "cli")]
impl clap::ValueEnum for Schedule {
    fn value_variants<'a>() -> &'a [Self] {
        &[Schedule::COSINE, Schedule::STEP, Schedule::CONSTANT]
    }

    fn to_possible_value(&self) -> Option<clap::builder::PossibleValue> {
        Some(clap::builder::PossibleValue::new(self.name()))
    }
}

/// Dynamic loss scaling for float16 autocast (PyTorch's `GradScaler` defaults): scale 2^16,
/// halved on an overflow (the step is skipped), doubled after 2000 clean steps.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct GradScaler {
    pub enabled: bool,
    pub scale: f64,
    pub good_steps: u64,
}

impl GradScaler {
    /// A scaler; disabled means scale 1 and no checks.
    pub fn new(enabled: bool) -> Self {
        GradScaler { enabled, scale: if enabled { 65536.0 } else { 1.0 }, good_steps: 0 }
    }

    /// Records whether the step's gradients were finite; returns whether to apply the step.
    pub fn update(&mut self, finite: bool) -> bool {
        if !self.enabled {
            return true;
        }
        if !finite {
            self.scale = (self.scale * 0.5).max(1.0);
            self.good_steps = 0;
            return false;
        }
        self.good_steps += 1;
        if self.good_steps >= 2000 {
            self.scale *= 2.0;
            self.good_steps = 0;
        }
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn param(v: &[f32]) -> Param {
        Param { name: "w".into(), tensor: Tensor::from_slice(v).set_requires_grad(true), lr_scale: 1.0, decay: true }
    }

    fn run(kind: OptimizerKind, wd: f64, steps: usize) -> Vec<f32> {
        let mut opt = Optimizer::new(kind, vec![param(&[1.0, -2.0, 3.0])], wd);
        for _ in 0..steps {
            opt.zero_grad();
            let loss = (&opt.params[0].tensor * &opt.params[0].tensor).sum(Kind::Float);
            loss.backward();
            opt.step(0.1, 1.0);
        }
        Vec::<f32>::try_from(&opt.params[0].tensor.detach()).unwrap()
    }

    #[test]
    fn sgd_momentum_matches_hand_computation() {
        // w=1, g=2w: v1=2, w=0.8; g=1.6, v2=0.9*2+1.6=3.4, w=0.8-0.34=0.46.
        let w = run(OptimizerKind::Sgd { momentum: 0.9, nesterov: false }, 0.0, 2);
        assert!((w[0] - 0.46).abs() < 1e-6, "{w:?}");
    }

    #[test]
    fn adamw_first_step_moves_by_lr() {
        let w = run(OptimizerKind::Adamw { beta1: 0.9, beta2: 0.999, eps: 1e-8 }, 0.0, 1);
        assert!((w[0] - 0.9).abs() < 1e-5 && (w[1] + 1.9).abs() < 1e-5, "{w:?}");
        let d = run(OptimizerKind::Adamw { beta1: 0.9, beta2: 0.999, eps: 1e-8 }, 0.5, 1);
        assert!((d[0] - (1.0 * 0.95 - 0.1)).abs() < 1e-5, "{d:?}");
    }

    #[test]
    fn cosine_warms_up_then_decays() {
        let s = Schedule::Cosine { warmup_epochs: 1.0, min_lr: 0.0 };
        assert!(s.lr(1.0, 0, 10, 10) < 0.2);
        assert!((s.lr(1.0, 10, 10, 10) - 1.0).abs() < 1e-9);
        assert!(s.lr(1.0, 99, 10, 10) < 0.01);
        let st = Schedule::Step { warmup_epochs: 0.0, step_size: 2, gamma: 0.1 };
        assert!((st.lr(1.0, 15, 10, 10) - 1.0).abs() < 1e-12);
        assert!((st.lr(1.0, 25, 10, 10) - 0.1).abs() < 1e-12);
        assert!((st.lr(1.0, 45, 10, 10) - 0.01).abs() < 1e-12);
    }
}
