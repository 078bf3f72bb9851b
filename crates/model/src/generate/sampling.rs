//! Picking the next token from a row of logits: greedy, or sampled with temperature, top-k
//! and top-p (nucleus), from a seeded generator so that a run repeats exactly.

use burn::config::Config;
use burn_sparse_attn_core::rng::SplitMix64;

use crate::error::{ModelError, ModelResult};

/// How the next token is chosen. With `temperature` 0 (the default) decoding is greedy: the
/// most likely token, the earliest on ties.
#[derive(Config, Debug, PartialEq)]
pub struct SamplingConfig {
    /// Softmax temperature; 0 is greedy.
    #[config(default = 0.0)]
    pub temperature: f64,
    /// Sample only among the `top_k` most likely tokens; 0 keeps all.
    #[config(default = 0)]
    pub top_k: usize,
    /// Sample only among the most likely tokens whose probabilities sum to `top_p` (nucleus
    /// sampling); 1 keeps all.
    #[config(default = 1.0)]
    pub top_p: f64,
    /// Seed of the generator.
    #[config(default = 0)]
    pub seed: u64,
}

impl SamplingConfig {
    /// Errors on a negative or non-finite temperature or a `top_p` outside `(0, 1]`.
    pub fn validate(&self) -> ModelResult<()> {
        if !(self.temperature.is_finite() && self.temperature >= 0.0) {
            return Err(ModelError::Generation(format!(
                "temperature is {}: give a finite value of at least 0 (0 is greedy)",
                self.temperature
            )));
        }
        if !(self.top_p > 0.0 && self.top_p <= 1.0) {
            return Err(ModelError::Generation(format!("top_p is {}: give a value in (0, 1]", self.top_p)));
        }
        Ok(())
    }

    /// A sampler following this config.
    pub fn sampler(&self) -> ModelResult<Sampler> {
        self.validate()?;
        Ok(Sampler { config: self.clone(), rng: SplitMix64::new(self.seed) })
    }
}

/// Draws tokens from logits as its [`SamplingConfig`] says.
#[derive(Debug, Clone)]
pub struct Sampler {
    config: SamplingConfig,
    rng: SplitMix64,
}

impl Sampler {
    /// The next token from `logits` (one per vocabulary entry).
    pub fn sample(&mut self, logits: &[f32]) -> ModelResult<u32> {
        if logits.is_empty() {
            return Err(ModelError::Generation("sampling from an empty vocabulary".into()));
        }
        if let Some(i) = logits.iter().position(|l| l.is_nan()) {
            return Err(ModelError::NonFinite(format!("the logit of token {i}")));
        }
        if self.config.temperature == 0.0 || self.config.top_k == 1 {
            return Ok(argmax(logits));
        }
        let candidates = self.candidates(logits);
        let draw = self.rng.uniform() as f64;
        let mut cumulative = 0.0;
        for &(token, probability) in &candidates {
            cumulative += probability;
            if draw < cumulative {
                return Ok(token);
            }
        }
        // Rounding left the draw past the last cumulative sum.
        Ok(candidates.last().map_or(0, |c| c.0))
    }

    /// The tokens that may be drawn with their probabilities (summing to 1), most likely
    /// first: softmax at the temperature, cut to `top_k`, then to the `top_p` nucleus.
    pub fn candidates(&self, logits: &[f32]) -> Vec<(u32, f64)> {
        let mut ranked: Vec<(u32, f64)> =
            logits.iter().enumerate().map(|(i, &l)| (i as u32, l as f64)).collect();
        // Stable: equal logits keep the earlier token first.
        ranked.sort_by(|a, b| b.1.total_cmp(&a.1));
        if self.config.top_k > 0 {
            ranked.truncate(self.config.top_k);
        }
        let max = ranked[0].1;
        let mut total = 0.0;
        for entry in &mut ranked {
            entry.1 = ((entry.1 - max) / self.config.temperature).exp();
            total += entry.1;
        }
        let mut kept = 0.0;
        let mut keep = None;
        for (i, entry) in ranked.iter_mut().enumerate() {
            entry.1 /= total;
            kept += entry.1;
            if kept >= self.config.top_p && keep.is_none() {
                keep = Some(i + 1);
            }
        }
        ranked.truncate(keep.unwrap_or(usize::MAX));
        let kept: f64 = ranked.iter().map(|c| c.1).sum();
        ranked.iter().map(|&(t, p)| (t, p / kept)).collect()
    }
}

/// The index of the largest value, the earliest on ties.
pub fn argmax(values: &[f32]) -> u32 {
    let mut best = 0;
    for (i, &v) in values.iter().enumerate() {
        if v > values[best] {
            best = i;
        }
    }
    best as u32
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sampler(temperature: f64, top_k: usize, top_p: f64) -> Sampler {
        SamplingConfig::new()
            .with_temperature(temperature)
            .with_top_k(top_k)
            .with_top_p(top_p)
            .sampler()
            .unwrap()
    }

    #[test]
    fn greedy_takes_the_earliest_maximum() {
        assert_eq!(sampler(0.0, 0, 1.0).sample(&[0.5, 2.0, -1.0, 2.0]).unwrap(), 1);
        assert_eq!(sampler(0.7, 1, 1.0).sample(&[0.5, 2.0, -1.0, 3.0]).unwrap(), 3);
    }

    #[test]
    fn candidates_follow_the_softmax_cut_by_top_k_and_top_p() {
        let logits = [1.0f32.ln(), 2.0f32.ln(), 4.0f32.ln(), 1.0f32.ln()];
        let all = sampler(1.0, 0, 1.0).candidates(&logits);
        let want = [(2, 0.5), (1, 0.25), (0, 0.125), (3, 0.125)];
        for ((token, p), (want_token, want_p)) in all.iter().zip(want) {
            assert_eq!(*token, want_token);
            assert!((p - want_p).abs() < 1e-6, "{all:?}");
        }
        let top2 = sampler(1.0, 2, 1.0).candidates(&logits);
        assert_eq!(top2.iter().map(|c| c.0).collect::<Vec<_>>(), [2, 1]);
        assert!((top2[0].1 - 2.0 / 3.0).abs() < 1e-6);
        // 0.5 + 0.25 reaches 0.7: the nucleus holds two tokens.
        let nucleus = sampler(1.0, 0, 0.7).candidates(&logits);
        assert_eq!(nucleus.iter().map(|c| c.0).collect::<Vec<_>>(), [2, 1]);
        // Halving the temperature squares the ratios: 16:4:1:1.
        let cold = sampler(0.5, 0, 1.0).candidates(&logits);
        assert!((cold[0].1 - 16.0 / 22.0).abs() < 1e-6, "{cold:?}");
    }

    #[test]
    fn draws_repeat_for_a_seed_and_follow_the_probabilities() {
        let logits = [0.0f32, 1.0, 2.0, -30.0];
        let draw = |seed| {
            let mut s = SamplingConfig::new().with_temperature(1.0).with_seed(seed).sampler().unwrap();
            (0..4000).map(|_| s.sample(&logits).unwrap()).collect::<Vec<_>>()
        };
        assert_eq!(draw(7), draw(7));
        assert_ne!(draw(7), draw(8));
        let tokens = draw(7);
        let probabilities = sampler(1.0, 0, 1.0).candidates(&logits);
        for (token, p) in probabilities {
            let share = tokens.iter().filter(|&&t| t == token).count() as f64 / tokens.len() as f64;
            assert!((share - p).abs() < 0.03, "token {token}: drawn {share}, probability {p}");
        }
    }

    #[test]
    fn bad_settings_and_logits_are_refused() {
        assert!(SamplingConfig::new().with_temperature(-1.0).sampler().is_err());
        assert!(SamplingConfig::new().with_temperature(f64::NAN).sampler().is_err());
        assert!(SamplingConfig::new().with_top_p(0.0).sampler().is_err());
        assert!(SamplingConfig::new().with_top_p(1.5).sampler().is_err());
        let error = sampler(1.0, 0, 1.0).sample(&[0.0, f32::NAN]).unwrap_err().to_string();
        assert!(error.contains("token 1") && error.contains("NaN"), "{error}");
        assert!(sampler(0.0, 0, 1.0).sample(&[]).is_err());
    }
}
