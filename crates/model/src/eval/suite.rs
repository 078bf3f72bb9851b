//! The methods an evaluation compares: the kinds of core's registry, each configured for an
//! equal key budget ([`KeyBudget`]) by its own registry entry, or as its authors deploy it
//! ([`Preset::AsDeployed`]).

use std::path::PathBuf;

use burn_sparse_attn_core::{AttentionConfig, HipAttentionConfig, HyperAttentionConfig};
pub use burn_sparse_attn_core::{HeadLayout, KeyBudget, MethodKind};
use serde::Serialize;

use crate::error::{ModelError, ModelResult};
use crate::llama::{AttentionPlan, LlamaConfig};

/// The attention heads of `model`.
pub fn head_layout(model: &LlamaConfig) -> HeadLayout {
    HeadLayout { head_dim: model.head_dim(), query_heads: model.heads, kv_heads: model.kv_heads }
}

/// The config of `method` for `model` at `budget`; `shared_selection` gives HashAttention one
/// key list per KV head (see `HashAttentionConfig::shared_selection`).
pub fn method_config(
    method: MethodKind,
    model: &LlamaConfig,
    budget: &KeyBudget,
    shared_selection: bool,
) -> AttentionConfig {
    match method.config_for_budget(&head_layout(model), budget) {
        AttentionConfig::Hash(hash) => AttentionConfig::Hash(hash.with_shared_selection(shared_selection)),
        config => config,
    }
}

/// A plan giving `method` (at `budget`, see [`method_config`]) to every layer but
/// `dense_layers`, with trained hash mappings from `hash_mappings` when given.
pub fn plan(
    method: MethodKind,
    model: &LlamaConfig,
    budget: &KeyBudget,
    dense_layers: &[usize],
    hash_mappings: &Option<PathBuf>,
    shared_selection: bool,
) -> AttentionPlan {
    AttentionPlan {
        hash_mappings: hash_mappings.clone(),
        ..AttentionPlan::new(method_config(method, model, budget, shared_selection), dense_layers.to_vec())
    }
}

/// How a sweep configures a method.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Preset {
    /// At the sweep's key budget (sink 16, window 64, the rest chosen) in every layer but the
    /// sweep's dense layers: every method at the same cost.
    EqualBudget,
    /// As its authors deploy it, whatever the sparsity (HyperAttention and HiP only):
    /// HyperAttention with blocks and samples of 256, exact below 4096 tokens, in the last
    /// quarter of the layers; HiP with its paper's sizes (mask 512 keys, query blocks of 64,
    /// key blocks of 2, sink 16, window 256, mask refreshed every 8 decode steps) after 3
    /// dense layers.
    AsDeployed,
    /// HyperAttention as deployed, its first 16 keys always attended exactly (an extension
    /// beyond the paper: `HyperAttentionConfig::exact_sink`).
    AsDeployedExactSink,
}

impl Preset {
    /// Short name, as in JSON and on the command line.
    pub fn name(self) -> &'static str {
        match self {
            Self::EqualBudget => "equal-budget",
            Self::AsDeployed => "as-deployed",
            Self::AsDeployedExactSink => "as-deployed-exact-sink",
        }
    }

    /// Every preset.
    pub const ALL: [Preset; 3] = [Self::EqualBudget, Self::AsDeployed, Self::AsDeployedExactSink];

    /// Whether `method` has this preset.
    pub fn applies_to(self, method: MethodKind) -> bool {
        match self {
            Self::EqualBudget => true,
            Self::AsDeployed => matches!(method, MethodKind::Hyper | MethodKind::Hip),
            Self::AsDeployedExactSink => method == MethodKind::Hyper,
        }
    }

    /// Whether the method's settings follow the sweep's sparsity (else it runs once per
    /// context, at the sparsity its own budget gives).
    pub fn follows_sparsity(self) -> bool {
        self == Self::EqualBudget
    }
}

impl std::str::FromStr for Preset {
    type Err = ModelError;

    fn from_str(s: &str) -> ModelResult<Self> {
        Self::ALL.into_iter().find(|p| p.name() == s).ok_or_else(|| {
            let names: Vec<_> = Self::ALL.iter().map(|p| p.name()).collect();
            ModelError::Eval(format!("unknown preset {s:?}; the presets are {}", names.join(", ")))
        })
    }
}

impl std::fmt::Display for Preset {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// Layers of the as-deployed HiP kept dense, and the share of layers (from the last) that
/// get the as-deployed HyperAttention.
const HIP_DENSE_LAYERS: usize = 3;
const HYPER_LAYER_SHARE: f64 = 0.25;
/// Keys of the as-deployed HyperAttention's exact sink.
const HYPER_EXACT_SINK: usize = 16;

/// What every run of a sweep shares.
#[derive(Debug, Clone, Default)]
pub struct SweepOptions {
    /// Layers kept dense by the equal-budget preset.
    pub dense_layers: Vec<usize>,
    /// Trained HashAttention mappings (a `.safetensors` file or a folder per
    /// `HashMappings::save_dir`); random mappings when `None`.
    pub hash_mappings: Option<PathBuf>,
    /// HashAttention with one key list per KV head instead of one per query head.
    pub shared_selection: bool,
}

/// One run of a sweep: a method, its preset and (for the equal budget) its sparsity.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Setting {
    /// The method.
    pub method: MethodKind,
    /// How it is configured.
    pub preset: Preset,
    /// Sparsity factor of an equal-budget run (1 for dense); ignored by the other presets.
    pub sparsity: f64,
}

/// A [`Setting`] made concrete for one context.
#[derive(Debug, Clone)]
pub struct Configured {
    /// Each layer's attention.
    pub plan: AttentionPlan,
    /// Keys the last query of the context attends to in a sparse layer.
    pub keys_per_query: usize,
    /// `context / keys_per_query`: the sparsity of an as-deployed run.
    pub sparsity: f64,
}

impl Setting {
    /// The plan of this setting for `model` at `context` tokens, and its keys per query.
    pub fn configure(
        &self,
        model: &LlamaConfig,
        context: usize,
        options: &SweepOptions,
    ) -> ModelResult<Configured> {
        let layers = model.layers;
        let (plan, keys) = match (self.preset, self.method) {
            (_, MethodKind::Dense) => (AttentionPlan::dense(), context),
            (Preset::EqualBudget, method) => {
                let budget = KeyBudget::new(context, self.sparsity)?;
                let config = method_config(method, model, &budget, options.shared_selection);
                (AttentionPlan::new(config, options.dense_layers.clone()), budget.total.min(context))
            }
            (Preset::AsDeployed | Preset::AsDeployedExactSink, MethodKind::Hyper) => {
                let sink = if self.preset == Preset::AsDeployedExactSink { HYPER_EXACT_SINK } else { 0 };
                let hyper = HyperAttentionConfig::new(model.head_dim()).with_exact_sink(sink);
                let keys = hyper_keys(&hyper, context);
                let sparse = ((layers as f64 * HYPER_LAYER_SHARE).round() as usize).clamp(1, layers);
                let plan = AttentionPlan::dense()
                    .with_layers(layers - sparse..layers, AttentionConfig::Hyper(hyper));
                (plan, keys)
            }
            (Preset::AsDeployed, MethodKind::Hip) => {
                let hip = HipAttentionConfig::new();
                let keys = (hip.sink + hip.window + hip.mask_k).min(context);
                let dense = (0..HIP_DENSE_LAYERS.min(layers)).collect();
                (AttentionPlan::new(AttentionConfig::Hip(hip), dense), keys)
            }
            (preset, method) => {
                return Err(ModelError::Eval(format!("{method} has no {} preset", preset.name())));
            }
        };
        let plan = AttentionPlan { hash_mappings: options.hash_mappings.clone(), ..plan };
        let sparsity =
            if self.preset.follows_sparsity() { self.sparsity } else { context as f64 / keys as f64 };
        Ok(Configured { plan, keys_per_query: keys, sparsity })
    }
}

/// Keys the last query of `context` tokens attends to under `hyper`'s causal recursion: its
/// exact leaf, plus a sorted block and the samples per level above it (and the exact sink).
fn hyper_keys(hyper: &HyperAttentionConfig, context: usize) -> usize {
    let mut n = context.saturating_sub(hyper.exact_sink);
    let mut keys = hyper.exact_sink.min(context);
    while n > hyper.min_seq_len.max(1) {
        let half = n.div_ceil(2);
        keys += hyper.block_size.min(half) + hyper.sample_size;
        n = half;
    }
    (keys + n).min(context)
}

/// The runs of a sweep: dense once, every sparse method of `methods` at every sparsity
/// with the equal budget, then the other `presets` of the methods that have them (once).
pub fn settings(methods: &[MethodKind], sparsities: &[f64], presets: &[Preset]) -> Vec<Setting> {
    let dense = Setting { method: MethodKind::Dense, preset: Preset::EqualBudget, sparsity: 1.0 };
    let sparse = || methods.iter().copied().filter(|&m| m != MethodKind::Dense);
    let mut runs = vec![dense];
    if presets.contains(&Preset::EqualBudget) {
        for &sparsity in sparsities {
            runs.extend(sparse().map(|method| Setting { method, preset: Preset::EqualBudget, sparsity }));
        }
    }
    for &preset in presets.iter().filter(|p| !p.follows_sparsity()) {
        runs.extend(sparse().filter(|&m| preset.applies_to(m)).map(|method| Setting {
            method,
            preset,
            sparsity: 1.0,
        }));
    }
    runs
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hyper_keys_follow_the_recursion() {
        let hyper = HyperAttentionConfig::new(64);
        assert_eq!(hyper_keys(&hyper, 4096), 4096);
        assert_eq!(hyper_keys(&hyper, 8192), 4096 + 512);
        assert_eq!(hyper_keys(&hyper, 16384), 4096 + 1024);
        assert_eq!(hyper_keys(&hyper.clone().with_exact_sink(16), 8192), 16 + 4088 + 512);
        assert_eq!(hyper_keys(&hyper.with_min_seq_len(0), 3), 3);
    }

    #[test]
    fn settings_run_dense_once_and_presets_once() {
        use MethodKind::*;
        let all = [Preset::EqualBudget, Preset::AsDeployed, Preset::AsDeployedExactSink];
        let runs = settings(&[Streaming, Hyper, Hip], &[8.0, 16.0], &all);
        let named: Vec<(MethodKind, Preset)> = runs.iter().map(|s| (s.method, s.preset)).collect();
        assert_eq!(runs.len(), 1 + 6 + 3);
        assert_eq!(named[0], (Dense, Preset::EqualBudget));
        assert_eq!(
            named[7..],
            [(Hyper, Preset::AsDeployed), (Hip, Preset::AsDeployed), (Hyper, Preset::AsDeployedExactSink)]
        );
        assert_eq!(settings(&[Hash], &[8.0], &[Preset::AsDeployed]).len(), 1);
    }
}
