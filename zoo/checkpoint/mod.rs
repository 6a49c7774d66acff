//! Checkpoint formats: PyTorch zip and legacy `torch.save` files, safetensors, and strict loading.
pub mod rules;
