//! A linear layer with separate weights per attention head, all heads in one matmul.

use burn::config::Config;
use burn::module::{Initializer, Module, Param};
use burn::tensor::{backend::Backend, Tensor};

/// Config of a [`HeadwiseLinear`].
#[derive(Config, Debug)]
pub struct HeadwiseLinearConfig {
    /// Number of heads, each with its own weights.
    pub heads: usize,
    /// Input features per head.
    pub d_input: usize,
    /// Output features per head.
    pub d_output: usize,
}

/// `y[h] = x[h] W[h] + b[h]` for every head `h` at once.
#[derive(Module, Debug)]
pub struct HeadwiseLinear<B: Backend> {
    /// `[heads, d_input, d_output]`.
    pub weight: Param<Tensor<B, 3>>,
    /// `[heads, d_output]`.
    pub bias: Param<Tensor<B, 2>>,
}

impl HeadwiseLinearConfig {
    /// Weights and biases uniform in `±1 / sqrt(d_input)`, like `burn::nn::Linear`, drawn
    /// now rather than lazily: each clone of a lazily initialised parameter draws its own
    /// values on first use, and clones of one hash mapping must sign alike.
    pub fn init<B: Backend>(&self, device: &B::Device) -> HeadwiseLinear<B> {
        let init = Initializer::KaimingUniform { gain: 1.0 / 3f64.sqrt(), fan_out_only: false };
        let fans = (Some(self.d_input), Some(self.d_output));
        HeadwiseLinear {
            weight: eager(init.init_with([self.heads, self.d_input, self.d_output], fans.0, fans.1, device)),
            bias: eager(init.init_with([self.heads, self.d_output], fans.0, fans.1, device)),
        }
    }
}

impl<B: Backend> HeadwiseLinear<B> {
    /// `x`: `[batch, heads, len, d_input]` -> `[batch, heads, len, d_output]`.
    pub fn forward(&self, x: Tensor<B, 4>) -> Tensor<B, 4> {
        let [heads, _, d_output] = self.weight.dims();
        let weight = self.weight.val().unsqueeze_dim::<4>(0);
        let bias = self.bias.val().reshape([1, heads, 1, d_output]);
        x.matmul(weight) + bias
    }
}

/// `param` with its value drawn, under its id.
fn eager<B: Backend, const D: usize>(param: Param<Tensor<B, D>>) -> Param<Tensor<B, D>> {
    Param::initialized(param.id, param.val())
}
