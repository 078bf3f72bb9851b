//! Greedy generation for many prompts as one batch, the rows advancing in lockstep:
//! evaluations run a row's prompts at about the cost of one.

use burn::tensor::backend::Backend;
use burn::tensor::{Int, Tensor};
use burn_sparse_attn_core::{profile, KvCache};

use crate::error::{ModelError, ModelResult};
use crate::llama::{phase_name, token_batch, Llama};

impl<B: Backend> Llama<B> {
    /// Greedy continuations of `prompts`, which must all have the same length, run as one
    /// batch (prefill, then one decode step per token for the whole batch): `max_new_tokens`
    /// tokens each, no stop tokens, past the model's context if need be.
    pub fn greedy_batch(&self, prompts: &[Vec<u32>], max_new_tokens: usize) -> ModelResult<Vec<Vec<u32>>> {
        for prompt in prompts {
            self.check_prompt(prompt, 0, true)?;
        }
        let input = token_batch(prompts, &self.embedding.device())?;
        if max_new_tokens == 0 {
            return Ok(vec![Vec::new(); prompts.len()]);
        }
        let mut caches = self.new_caches();
        let first = self.greedy_step(input, &mut caches)?;
        let chosen = first.into_iter().map(|t| vec![t]).collect();
        self.lockstep(&mut caches, &vec![Vec::new(); prompts.len()], chosen, max_new_tokens)
    }

    /// Greedy continuations after the tokens already in `caches` (one per layer, a batch of
    /// `forced.len()` rows, from an earlier pass, possibly with another attention: see
    /// `KvCache::hand_over`). Row `r` is fed `forced[r]` one decode step at a time, then its
    /// own greedy tokens; the rows advance together, one token each per step, so their
    /// forced tokens may differ in number. Returns the `max_new_tokens` tokens each row
    /// chose after its forced ones; no stop tokens, past the model's context if need be.
    ///
    /// Errors when `caches` are not one per layer or hold another batch size, or when a row
    /// has no forced token (there would be nothing to decode from).
    pub fn greedy_batch_after(
        &self,
        caches: &mut [KvCache<B>],
        forced: &[Vec<u32>],
        max_new_tokens: usize,
    ) -> ModelResult<Vec<Vec<u32>>> {
        let cached = caches.first().map_or(0, KvCache::len);
        let batch = caches.first().and_then(|c| c.keys()).map(|k| k.dims()[0]);
        if caches.len() != self.layers.len() || batch.is_some_and(|b| b != forced.len()) {
            return Err(ModelError::Generation(format!(
                "{} caches of batch {batch:?} given for {} layers and {} rows",
                caches.len(),
                self.layers.len(),
                forced.len()
            )));
        }
        for row in forced {
            self.check_prompt(row, cached, true)?;
        }
        self.lockstep(caches, forced, vec![Vec::new(); forced.len()], max_new_tokens)
    }

    /// Decode steps of the whole batch until every row has chosen `max_new_tokens` tokens:
    /// each step feeds row `r` its next forced token, or, once those are fed, its last
    /// chosen one; a row's choices count from the step that fed its last forced token.
    fn lockstep(
        &self,
        caches: &mut [KvCache<B>],
        forced: &[Vec<u32>],
        mut chosen: Vec<Vec<u32>>,
        max_new_tokens: usize,
    ) -> ModelResult<Vec<Vec<u32>>> {
        let device = self.embedding.device();
        let mut step = 0;
        while chosen.iter().any(|c| c.len() < max_new_tokens) {
            let input: Vec<Vec<u32>> = forced
                .iter()
                .zip(&chosen)
                .map(|(f, c)| vec![*f.get(step).or(c.last()).expect("a row has a forced or chosen token")])
                .collect();
            let next = self.greedy_step(token_batch(&input, &device)?, caches)?;
            for ((row, f), t) in chosen.iter_mut().zip(forced).zip(next) {
                if step + 1 >= f.len() {
                    row.push(t);
                }
            }
            step += 1;
        }
        chosen.iter_mut().for_each(|c| c.truncate(max_new_tokens));
        Ok(chosen)
    }

    /// Appends `input: [batch, len]` to `caches`; the greedy next token of each row.
    fn greedy_step(&self, input: Tensor<B, 2, Int>, caches: &mut [KvCache<B>]) -> ModelResult<Vec<u32>> {
        let device = input.device();
        let phase = phase_name(input.dims()[1]);
        profile::span::<B, _>(format_args!("{phase} pass"), &device, || {
            let hidden = self.hidden(input, caches)?;
            let [batch, t, d] = hidden.dims();
            profile::span::<B, _>(format_args!("{phase} logits and argmax"), &device, || {
                let last = self.logits(hidden.slice([0..batch, t - 1..t, 0..d]));
                let next: Vec<i64> = last
                    .argmax(2)
                    .into_data()
                    .convert::<i64>()
                    .to_vec()
                    .map_err(|e| ModelError::Generation(format!("reading the next tokens: {e:?}")))?;
                Ok(next.into_iter().map(|t| t as u32).collect())
            })
        })
    }
}
