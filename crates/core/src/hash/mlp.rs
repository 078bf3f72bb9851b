//! The per-head MLP that maps a query or key to its hash code.

use burn::config::Config;
use burn::module::Module;
use burn::tensor::{activation, backend::Backend, Tensor};
use serde::{Deserialize, Serialize};

use super::headwise_linear::{HeadwiseLinear, HeadwiseLinearConfig};
use crate::error::{AttnError, AttnResult};

/// Non-linearity between the layers of a [`HeadwiseMlp`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum HashActivation {
    /// `x * sigmoid(x)`, the paper's choice.
    Silu,
    /// `max(x, 0)`.
    Relu,
    /// Gaussian error linear unit.
    Gelu,
    /// Hyperbolic tangent.
    Tanh,
}

impl HashActivation {
    /// Applies the activation element-wise.
    pub fn apply<B: Backend, const D: usize>(&self, x: Tensor<B, D>) -> Tensor<B, D> {
        match self {
            Self::Silu => activation::silu(x),
            Self::Relu => activation::relu(x),
            Self::Gelu => activation::gelu(x),
            Self::Tanh => x.tanh(),
        }
    }
}

/// Config of a [`HeadwiseMlp`]: `layers` linear layers, `hidden` wide, `d_output` out.
#[derive(Config, Debug)]
pub struct HeadwiseMlpConfig {
    /// Number of heads, each with its own MLP.
    pub heads: usize,
    /// Input features (the head dimension).
    pub d_input: usize,
    /// Output features (the signature bits).
    pub d_output: usize,
    /// Width of the hidden layers.
    #[config(default = 128)]
    pub hidden: usize,
    /// Number of linear layers (1 is a plain linear map).
    #[config(default = 3)]
    pub layers: usize,
    /// Non-linearity between layers.
    #[config(default = "HashActivation::Silu")]
    pub activation: HashActivation,
}

/// An MLP per head, with all heads batched in one matmul per layer.
#[derive(Module, Debug)]
pub struct HeadwiseMlp<B: Backend> {
    /// The linear layers, input first.
    pub layers: Vec<HeadwiseLinear<B>>,
    /// Non-linearity between layers (none after the last).
    #[module(skip)]
    pub activation: HashActivation,
}

impl HeadwiseMlpConfig {
    /// Checks the sizes.
    pub fn validate(&self) -> AttnResult<()> {
        if self.layers == 0 || self.heads == 0 || self.d_input == 0 || self.d_output == 0 {
            return Err(AttnError::Config(format!(
                "hash MLP needs at least one layer, head, input and output, got {self:?}"
            )));
        }
        if self.layers > 1 && self.hidden == 0 {
            return Err(AttnError::Config("hash MLP hidden width must be positive".into()));
        }
        Ok(())
    }

    /// Creates the MLP with random weights.
    pub fn init<B: Backend>(&self, device: &B::Device) -> AttnResult<HeadwiseMlp<B>> {
        self.validate()?;
        let layers = (0..self.layers)
            .map(|i| {
                let d_input = if i == 0 { self.d_input } else { self.hidden };
                let d_output = if i + 1 == self.layers { self.d_output } else { self.hidden };
                HeadwiseLinearConfig::new(self.heads, d_input, d_output).init(device)
            })
            .collect();
        Ok(HeadwiseMlp { layers, activation: self.activation })
    }
}

impl<B: Backend> HeadwiseMlp<B> {
    /// `x`: `[batch, heads, len, d_input]` -> `[batch, heads, len, d_output]`.
    pub fn forward(&self, x: Tensor<B, 4>) -> Tensor<B, 4> {
        let last = self.layers.len() - 1;
        self.layers.iter().enumerate().fold(x, |x, (i, layer)| {
            let y = layer.forward(x);
            if i < last {
                self.activation.apply(y)
            } else {
                y
            }
        })
    }
}
