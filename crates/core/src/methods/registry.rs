//! The registry of methods: the one place where the methods of this crate are listed.
//!
//! Each method lives in its own file: a config (`#[derive(Config)]`, implementing
//! [`MethodEntry`]: name, description, the config for an equal key budget) and a module
//! (implementing [`AttentionMethod`]). The `registry!` invocation at the bottom of this file
//! names each once and generates from that list everything that enumerates methods:
//! [`MethodKind`] (names, parsing, serialisation, descriptions), [`AttentionConfig`] (a
//! serialisable choice of method) and [`Attention`] (a module holding any method).
//! docs/adding-a-method.md walks through adding one.

use std::fmt;
use std::str::FromStr;

use burn::config::Config;
use burn::module::Module;
use burn::tensor::{backend::Backend, Tensor};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use super::budget::{HeadLayout, KeyBudget};
use super::dense::{DenseAttention, DenseAttentionConfig};
use super::hash_attention::{HashAttention, HashAttentionConfig};
use super::hip::{HipAttention, HipAttentionConfig};
use super::hyper::{HyperAttention, HyperAttentionConfig};
use super::method::AttentionMethod;
use super::oracle_top_k::{OracleTopKAttention, OracleTopKConfig};
use super::quest::{QuestAttention, QuestConfig};
use super::streaming::{StreamingAttention, StreamingAttentionConfig};
use crate::attend::AttnOutput;
use crate::cache::KvCache;
use crate::error::{AttnError, AttnResult};

/// What the registry needs of a method's config.
pub trait MethodEntry: Sized {
    /// The module the config builds.
    type Module<B: Backend>: AttentionMethod<B>;
    /// Short name: command-line argument, report label, JSON value.
    const NAME: &'static str;
    /// One line for help texts and tables: what the method selects.
    const DESCRIPTION: &'static str;
    /// Whether the method attends exactly to a subset of the keys, so that its log-sum-exp
    /// measures the attention mass it keeps (HyperAttention estimates the rest instead).
    const ATTENDS_KEY_SUBSET: bool = true;

    /// Builds the method; errors on invalid options.
    fn build<B: Backend>(&self, device: &B::Device) -> AttnResult<Self::Module<B>>;

    /// This method's config for a model with `heads` when every query may attend to
    /// `budget.total` keys: how evaluations compare methods at equal cost.
    fn for_budget(heads: &HeadLayout, budget: &KeyBudget) -> Self;
}

macro_rules! registry {
    ($( $(#[$doc:meta])* $variant:ident($config:ty => $module:ty) ),+ $(,)?) => {
        /// Every method of this crate, by kind.
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub enum MethodKind {
            $( $(#[$doc])* $variant, )+
        }

        impl MethodKind {
            /// Every method, dense first, in registry order.
            pub const ALL: &'static [MethodKind] = &[$(MethodKind::$variant),+];

            /// Short name, as parsed by [`FromStr`].
            pub fn name(self) -> &'static str {
                match self { $(Self::$variant => <$config as MethodEntry>::NAME,)+ }
            }

            /// One line on what the method selects.
            pub fn description(self) -> &'static str {
                match self { $(Self::$variant => <$config as MethodEntry>::DESCRIPTION,)+ }
            }

            /// See [`MethodEntry::ATTENDS_KEY_SUBSET`].
            pub fn attends_key_subset(self) -> bool {
                match self { $(Self::$variant => <$config as MethodEntry>::ATTENDS_KEY_SUBSET,)+ }
            }

            /// The config of this method for `heads` at `budget` (see
            /// [`MethodEntry::for_budget`]).
            pub fn config_for_budget(self, heads: &HeadLayout, budget: &KeyBudget) -> AttentionConfig {
                match self {
                    $(Self::$variant => AttentionConfig::$variant(<$config>::for_budget(heads, budget)),)+
                }
            }
        }

        /// Which attention method to build, with its options.
        #[derive(Config, Debug)]
        pub enum AttentionConfig {
            $( $(#[$doc])* $variant($config), )+
        }

        /// Any attention method of this crate; every variant answers the same
        /// [`AttentionMethod`] calls.
        #[derive(Module, Debug)]
        pub enum Attention<B: Backend> {
            $( $(#[$doc])* $variant($module), )+
        }

        impl AttentionConfig {
            /// Builds the chosen method.
            pub fn init<B: Backend>(&self, device: &B::Device) -> AttnResult<Attention<B>> {
                Ok(match self { $(Self::$variant(c) => Attention::$variant(c.build::<B>(device)?),)+ })
            }

            /// The method this config builds.
            pub fn kind(&self) -> MethodKind {
                match self { $(Self::$variant(_) => MethodKind::$variant,)+ }
            }
        }

        impl<B: Backend> Attention<B> {
            /// The method held.
            pub fn kind(&self) -> MethodKind {
                match self { $(Self::$variant(_) => MethodKind::$variant,)+ }
            }
        }

        impl<B: Backend> AttentionMethod<B> for Attention<B> {
            fn forward_cached(
                &self,
                q: Tensor<B, 4>,
                k: Tensor<B, 4>,
                v: Tensor<B, 4>,
                cache: &mut KvCache<B>,
            ) -> AttnResult<AttnOutput<B>> {
                match self { $(Self::$variant(m) => m.forward_cached(q, k, v, cache),)+ }
            }
        }
    };
}

registry! {
    /// Exact attention over every key.
    Dense(DenseAttentionConfig => DenseAttention),
    /// Sink + sliding window (StreamingLLM).
    Streaming(StreamingAttentionConfig => StreamingAttention),
    /// Sink + window + top-k by exact score.
    OracleTopK(OracleTopKConfig => OracleTopKAttention),
    /// Sink + window + top-k pages by the bound of page-wise key minima and maxima (Quest).
    Quest(QuestConfig => QuestAttention),
    /// Hierarchically pruned top-k key blocks + sink + window (HiP).
    Hip(HipAttentionConfig => HipAttention),
    /// LSH-sorted blocks + sampled columns (HyperAttention).
    Hyper(HyperAttentionConfig => HyperAttention<B>),
    /// Sink + window + top-k by learned bit signatures (HashAttention).
    Hash(HashAttentionConfig => HashAttention<B>),
}

impl MethodKind {
    /// Every method but dense: the sparse ones an evaluation compares with dense.
    pub fn sparse() -> Vec<MethodKind> {
        Self::ALL.iter().copied().filter(|&m| m != MethodKind::Dense).collect()
    }
}

impl<B: Backend> Attention<B> {
    /// Short name of the method, for reports.
    pub fn name(&self) -> &'static str {
        self.kind().name()
    }
}

impl fmt::Display for MethodKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for MethodKind {
    type Err = AttnError;

    fn from_str(s: &str) -> AttnResult<MethodKind> {
        Self::ALL.iter().copied().find(|m| m.name() == s).ok_or_else(|| {
            let names: Vec<_> = Self::ALL.iter().map(|m| m.name()).collect();
            AttnError::Config(format!("unknown method {s:?}; the methods are {}", names.join(", ")))
        })
    }
}

impl Serialize for MethodKind {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(self.name())
    }
}

impl<'de> Deserialize<'de> for MethodKind {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let name = String::deserialize(deserializer)?;
        name.parse().map_err(serde::de::Error::custom)
    }
}
