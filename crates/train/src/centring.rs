//! Key centring (an option of the reference code): queries and keys enter the MLPs as
//! `(x - mean) / std`, with the mean and standard deviation of each KV head's keys per
//! dimension. Post-RoPE keys share a large common component that the first layer would
//! otherwise have to learn around; subtracting it changes no query's key ranking
//! (`q.mean` is one constant per query).
//!
//! The statistics come from the training passages and stay fixed, so that a key's
//! signature never depends on its context; after training they are folded into the first
//! linear layer of every MLP ([`KeyCentring::fold`]), and the saved mappings are plain
//! mappings of raw queries and keys: nothing changes at inference.

use burn::module::Param;
use burn::tensor::{backend::Backend, Tensor, TensorData};
use burn_sparse_attn_core::HashMappings;

use crate::capture::CapturedQk;

/// The smallest spread a dimension is scaled by, as a fraction of its head's mean spread.
const STD_FLOOR: f64 = 0.1;

/// Per layer and KV head, the keys' mean and `1 / std` per dimension, row-major
/// `[kv_heads, head_dim]`.
#[derive(Debug, Clone)]
pub struct KeyCentring {
    /// KV heads.
    pub kv_heads: usize,
    /// Dimension per head.
    pub head_dim: usize,
    /// Per layer, the mean key of each KV head.
    pub mean: Vec<Vec<f32>>,
    /// Per layer, `1 / std` of each KV head's keys per dimension (floored, see `STD_FLOOR`).
    pub inv_std: Vec<Vec<f32>>,
}

impl KeyCentring {
    /// Statistics over every key of `passages` (one model; at least one passage).
    pub fn from_passages(passages: &[CapturedQk]) -> Self {
        let first = &passages[0];
        let (kv_heads, d) = (first.kv_heads, first.head_dim);
        let layers = first.layers.len();
        let mut mean = vec![vec![0f64; kv_heads * d]; layers];
        let mut square = vec![vec![0f64; kv_heads * d]; layers];
        let mut tokens = 0usize;
        for passage in passages {
            for (l, layer) in passage.layers.iter().enumerate() {
                for h in 0..kv_heads {
                    let rows = &layer.k[h * passage.len * d..(h + 1) * passage.len * d];
                    for row in rows.chunks(d) {
                        for (j, &x) in row.iter().enumerate() {
                            mean[l][h * d + j] += x as f64;
                            square[l][h * d + j] += (x as f64) * (x as f64);
                        }
                    }
                }
            }
            tokens += passage.len;
        }
        let n = tokens.max(1) as f64;
        let mean: Vec<Vec<f64>> = mean.iter().map(|m| m.iter().map(|x| x / n).collect()).collect();
        let inv_std = mean
            .iter()
            .zip(&square)
            .map(|(m, s)| {
                let std: Vec<f64> = m.iter().zip(s).map(|(m, s)| (s / n - m * m).max(0.0).sqrt()).collect();
                // A nearly constant dimension would be scaled up without bound (queries vary
                // there even when keys do not): no dimension is scaled more than
                // 1 / (STD_FLOOR x its head's mean spread).
                std.chunks(d)
                    .flat_map(|head| {
                        let floor = STD_FLOOR * head.iter().sum::<f64>() / d as f64;
                        head.iter().map(move |s| (1.0 / (s.max(floor) + 1e-6)) as f32)
                    })
                    .collect()
            })
            .collect();
        let mean = mean.iter().map(|m| m.iter().map(|&x| x as f32).collect()).collect();
        Self { kv_heads, head_dim: d, mean, inv_std }
    }

    /// `x: [batch, heads, len, head_dim]` of `layer` standardised with the statistics of
    /// each head's KV head (heads a multiple of the KV heads, grouped as in GQA).
    pub fn apply<B: Backend>(&self, layer: usize, x: Tensor<B, 4>) -> Tensor<B, 4> {
        let heads = x.dims()[1];
        let device = x.device();
        let mean = self.per_head::<B>(&self.mean[layer], heads, &device);
        let inv_std = self.per_head::<B>(&self.inv_std[layer], heads, &device);
        (x - mean) * inv_std
    }

    /// The mappings that give on raw inputs what `mappings` give on standardised ones:
    /// `((x - m) * s) W + b = x W' + b'` with `W' = diag(s) W` and `b' = b - m W'`, in every
    /// MLP's first layer.
    pub fn fold<B: Backend>(&self, mappings: HashMappings<B>) -> HashMappings<B> {
        self.map_first_layers(mappings, |weight, bias, scale, shift| {
            let folded = weight * scale;
            let moved = shift.matmul(folded.clone()).squeeze_dim::<2>(1);
            (folded, bias - moved)
        })
    }

    /// The inverse of [`fold`](Self::fold): saved mappings of raw inputs as mappings of
    /// standardised ones, to continue training them with centring (`W = W' / s`,
    /// `b = b' + m W'`).
    pub fn unfold<B: Backend>(&self, mappings: HashMappings<B>) -> HashMappings<B> {
        self.map_first_layers(mappings, |weight, bias, scale, shift| {
            let moved = shift.matmul(weight.clone()).squeeze_dim::<2>(1);
            (weight / scale, bias + moved)
        })
    }

    /// Replaces the weight `[heads, d, out]` and bias `[heads, out]` of the first layer of
    /// every query and key MLP by `f(weight, bias, scale [heads, d, 1], mean [heads, 1, d])`,
    /// each head with its KV head's statistics. New parameters are detached: on an
    /// autodiff backend they are leaves to train.
    fn map_first_layers<B: Backend>(
        &self,
        mut mappings: HashMappings<B>,
        f: impl Fn(Tensor<B, 3>, Tensor<B, 2>, Tensor<B, 3>, Tensor<B, 3>) -> (Tensor<B, 3>, Tensor<B, 2>),
    ) -> HashMappings<B> {
        for (layer, mapping) in mappings.layers.iter_mut().enumerate() {
            for mlp in [&mut mapping.query, &mut mapping.key] {
                let first = &mut mlp.layers[0];
                let weight = first.weight.val();
                let [heads, d, _] = weight.dims();
                let device = weight.device();
                let scale = self.per_head::<B>(&self.inv_std[layer], heads, &device).reshape([heads, d, 1]);
                let shift = self.per_head::<B>(&self.mean[layer], heads, &device).reshape([heads, 1, d]);
                let (weight, bias) = f(weight, first.bias.val(), scale, shift);
                first.weight = Param::from_tensor(weight.detach());
                first.bias = Param::from_tensor(bias.detach());
            }
        }
        mappings
    }

    /// A statistic `[kv_heads, head_dim]` repeated for `heads` grouped heads, as
    /// `[1, heads, 1, head_dim]`.
    fn per_head<B: Backend>(&self, stat: &[f32], heads: usize, device: &B::Device) -> Tensor<B, 4> {
        let (kv, d) = (self.kv_heads, self.head_dim);
        assert!(heads.is_multiple_of(kv), "{heads} heads do not group over {kv} KV heads");
        let group = heads / kv;
        let rows: Vec<f32> =
            (0..heads).flat_map(|h| stat[(h / group) * d..(h / group + 1) * d].to_vec()).collect();
        Tensor::from_data(TensorData::new(rows, [1, heads, 1, d]), device)
    }
}
