//! `--float`: the float type the model computes in, set as the device's default before
//! anything is loaded, so that weights, activations, KV caches and the methods' own
//! parameters all take it (half precision puts the matmuls and the prefill kernels on
//! tensor cores where the GPU has them).

use burn::tensor::{set_default_dtypes, Device, Element, FloatDType, IntDType};

use crate::backend::Backend;
use crate::setup::Error;

/// The float type of the model's tensors.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, clap::ValueEnum, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Float {
    /// 32-bit (the reference; matches transformers).
    #[default]
    F32,
    /// IEEE half precision (normalisation statistics and log-probabilities stay in f32).
    F16,
    /// bfloat16 (normalisation statistics and log-probabilities stay in f32).
    Bf16,
}

impl Float {
    /// The name `--float` takes.
    pub fn name(self) -> &'static str {
        match self {
            Float::F32 => "f32",
            Float::F16 => "f16",
            Float::Bf16 => "bf16",
        }
    }

    fn dtype(self) -> FloatDType {
        match self {
            Float::F32 => FloatDType::F32,
            Float::F16 => FloatDType::F16,
            Float::Bf16 => FloatDType::BF16,
        }
    }

    /// Makes this the default float type of `device`; call before any tensor is created
    /// there. Errors when the backend or the device lacks it.
    pub fn apply(self, device: &Device<Backend>) -> Result<(), Error> {
        if self == Float::F32 {
            return Ok(());
        }
        let int: IntDType =
            <<Backend as burn::tensor::backend::BackendTypes>::IntElem as Element>::dtype().into();
        set_default_dtypes::<Backend>(device, self.dtype(), int).map_err(|e| {
            format!(
                "--float {}: the {} backend cannot compute in it on this device ({e:?}); use --float f32",
                self.name(),
                crate::backend::name()
            )
            .into()
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn f32_is_always_there() {
        assert!(Float::F32.apply(&Default::default()).is_ok());
    }

    #[cfg(not(any(feature = "wgpu", feature = "cuda")))]
    #[test]
    fn half_precision_on_the_cpu_is_refused_clearly() {
        for float in [Float::F16, Float::Bf16] {
            let error = float.apply(&Default::default()).unwrap_err().to_string();
            assert!(
                error.contains(&format!("--float {}", float.name())) && error.contains("use --float f32"),
                "{error}"
            );
        }
    }
}
