//! Index sets: the keys each query attends to.

use burn::tensor::{backend::Backend, Bool, Int, Tensor};

use crate::error::{AttnError, AttnResult};

/// The keys each query attends to, as indices into the context, never a dense mask.
///
/// - `indices`: `[batch, query_heads, query_len, n]`, key positions
/// - `valid`: `[batch, query_heads, query_len, n]`, false for padding entries (a query may
///   have fewer than `n` keys); the index of a padding entry is any in-range value
#[derive(Debug, Clone)]
pub struct KeySelection<B: Backend> {
    /// Key positions, `[batch, query_heads, query_len, n]`.
    pub indices: Tensor<B, 4, Int>,
    /// Which entries are real, `[batch, query_heads, query_len, n]`.
    pub valid: Tensor<B, 4, Bool>,
}

impl<B: Backend> KeySelection<B> {
    /// A selection from indices and validity of the same shape.
    pub fn new(indices: Tensor<B, 4, Int>, valid: Tensor<B, 4, Bool>) -> AttnResult<Self> {
        if indices.dims() != valid.dims() {
            return Err(AttnError::Shape {
                name: "valid",
                expected: format!("{:?} (the shape of indices)", indices.dims()),
                got: valid.dims().to_vec(),
            });
        }
        Ok(Self { indices, valid })
    }

    /// `[batch, query_heads, query_len, n]`.
    pub fn dims(&self) -> [usize; 4] {
        self.indices.dims()
    }

    /// A selection of `[batch, rows, query_len, n]` given to each of `group` consecutive
    /// query heads: `[batch, rows * group, query_len, n]` (a list shared by a KV head's query
    /// heads).
    pub fn per_query_head(self, group: usize) -> Self {
        if group == 1 {
            return self;
        }
        let [b, rows, t, n] = self.dims();
        let spread = |x: Tensor<B, 4, Int>| {
            x.reshape([b, rows, 1, t, n]).expand([b, rows, group, t, n]).reshape([b, rows * group, t, n])
        };
        let valid = spread(self.valid.int()).bool();
        Self { indices: spread(self.indices), valid }
    }

    /// Entries per query, padding included.
    pub fn width(&self) -> usize {
        self.dims()[3]
    }

    /// Number of valid keys of each query, `[batch, query_heads, query_len]`.
    pub fn counts(&self) -> Tensor<B, 3, Int> {
        self.valid.clone().int().sum_dim(3).squeeze_dim(3)
    }

    /// Checks that every valid index lies in `0..kv_len` (reads the data back).
    pub fn check_in_range(&self, kv_len: usize) -> AttnResult<()> {
        let marked = self.indices.clone().mask_fill(self.valid.clone().bool_not(), 0);
        let min: i64 = marked.clone().min().into_scalar().elem();
        let max: i64 = marked.max().into_scalar().elem();
        for index in [min, max] {
            if index < 0 || index >= kv_len as i64 {
                return Err(AttnError::IndexOutOfRange { index, context: kv_len });
            }
        }
        Ok(())
    }

    /// The union of several selections of the same `[batch, heads, queries]`, without
    /// duplicates, each query's keys sorted ascending (padding last).
    pub fn union(sets: Vec<Self>, kv_len: usize) -> AttnResult<Self> {
        let first = sets.first().ok_or(AttnError::Config("union of no selection".into()))?;
        let [b, h, t, _] = first.dims();
        let mut marked = Vec::with_capacity(sets.len());
        for set in sets {
            let [sb, sh, st, _] = set.dims();
            if (sb, sh, st) != (b, h, t) {
                return Err(AttnError::Shape {
                    name: "union",
                    expected: format!("[{b}, {h}, {t}, n] for every selection"),
                    got: set.dims().to_vec(),
                });
            }
            marked.push(set.indices.mask_fill(set.valid.bool_not(), kv_len as i64));
        }
        let sorted = Tensor::cat(marked, 3).sort(3);
        let n = sorted.dims()[3];
        let device = sorted.device();
        let before_first = Tensor::<B, 4, Int>::full([b, h, t, 1], -1, &device);
        let previous = Tensor::cat(vec![before_first, sorted.clone().narrow(3, 0, n - 1)], 3);
        let valid = sorted.clone().lower_elem(kv_len as i64).bool_and(sorted.clone().not_equal(previous));
        let indices = sorted.clamp_max(kv_len as i64 - 1);
        Ok(Self { indices, valid })
    }

    /// Dense `[batch, query_heads, query_len, kv_len]` mask of the selected keys, for tests
    /// and inspection only: it is the T x T object the selection exists to avoid.
    pub fn to_dense_mask(&self, kv_len: usize) -> Tensor<B, 4, Bool> {
        let [b, h, t, _] = self.dims();
        let counts = Tensor::<B, 4, Int>::zeros([b, h, t, kv_len], &self.indices.device());
        counts
            .scatter(3, self.indices.clone(), self.valid.clone().int(), burn::tensor::IndexingUpdateOp::Add)
            .greater_elem(0)
    }
}

use burn::tensor::ElementConversion;
