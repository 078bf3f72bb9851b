//! The result of attention: output and log-sum-exp.

use burn::tensor::{backend::Backend, Tensor};

/// Attention output with the log-sum-exp of the scaled logits of each query, so that
/// partial results over disjoint key sets merge exactly (see [`crate::merge`]).
#[derive(Debug, Clone)]
pub struct AttnOutput<B: Backend> {
    /// `[batch, query_heads, query_len, value_dim]`.
    pub output: Tensor<B, 4>,
    /// `[batch, query_heads, query_len]`; `-inf` for a query that saw no key.
    pub lse: Tensor<B, 3>,
}

impl<B: Backend> AttnOutput<B> {
    /// Concatenates results of consecutive query chunks (along the query axis).
    pub fn cat(parts: Vec<Self>) -> Self {
        let (outputs, lses): (Vec<_>, Vec<_>) = parts.into_iter().map(|p| (p.output, p.lse)).unzip();
        Self { output: Tensor::cat(outputs, 2), lse: Tensor::cat(lses, 2) }
    }
}
