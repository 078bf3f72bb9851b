//! Errors a caller can cause: shapes, budgets, configs, files.

use thiserror::Error;

/// An error caused by the input to an attention call, a config or a file.
///
/// Bugs inside the library panic; everything a user can get wrong comes back as one of these.
#[derive(Debug, Clone, PartialEq, Error)]
pub enum AttnError {
    /// A tensor does not have the shape the call needs.
    #[error("{name} must have shape {expected}, got {got:?}")]
    Shape {
        /// Which argument.
        name: &'static str,
        /// The expected shape, in words.
        expected: String,
        /// The shape that was passed.
        got: Vec<usize>,
    },
    /// Query heads are not a multiple of key/value heads (grouped-query attention).
    #[error("query heads ({query_heads}) must be a multiple of key/value heads ({kv_heads})")]
    HeadsNotDivisible {
        /// Number of query heads.
        query_heads: usize,
        /// Number of key/value heads.
        kv_heads: usize,
    },
    /// Hash signatures are packed into u32 words, so `bits` must be a positive multiple of 32.
    #[error("bits must be a positive multiple of 32, got {0}")]
    BitsNotMultipleOf32(usize),
    /// An explicit budget asks for more keys than the context holds.
    #[error("a budget of {budget} keys exceeds the context of {context} keys")]
    BudgetExceedsContext {
        /// Keys asked for.
        budget: usize,
        /// Keys available.
        context: usize,
    },
    /// There is no key to attend to.
    #[error("the key/value context is empty")]
    EmptyContext,
    /// More queries than keys in causal attention, or a query offset past the context.
    #[error("queries at positions {offset}..{end} do not fit in a context of {context} keys")]
    QueriesPastContext {
        /// Position of the first query.
        offset: usize,
        /// One past the position of the last query.
        end: usize,
        /// Number of keys.
        context: usize,
    },
    /// A tensor holds NaN or infinite values (only reported by [`crate::ensure_finite`]).
    #[error("{0} contains NaN or infinite values")]
    NonFinite(&'static str),
    /// An index of a key selection is outside the context.
    #[error("key index {index} is outside the context of {context} keys")]
    IndexOutOfRange {
        /// The offending index.
        index: i64,
        /// Number of keys.
        context: usize,
    },
    /// A config value is out of its range.
    #[error("invalid config: {0}")]
    Config(String),
    /// The KV cache does not match the call.
    #[error("KV cache: {0}")]
    Cache(String),
    /// Saving or loading a file failed.
    #[error("file {path}: {message}")]
    File {
        /// The file.
        path: String,
        /// What went wrong.
        message: String,
    },
}

/// Result of a fallible attention call.
pub type AttnResult<T> = core::result::Result<T, AttnError>;
