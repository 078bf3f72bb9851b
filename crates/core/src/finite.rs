//! Opt-in check for NaN and infinities.

use burn::tensor::{backend::Backend, Tensor};

use crate::error::{AttnError, AttnResult};

/// Errors when `x` holds NaN or an infinity (reads one value back from the device).
///
/// Attention itself does not check: NaN in an input propagates to the outputs that read
/// it, and top-k selection never chooses a key whose score is NaN. Call this on inputs
/// whose origin you do not trust.
pub fn ensure_finite<B: Backend, const D: usize>(x: &Tensor<B, D>, name: &'static str) -> AttnResult<()> {
    let all_finite: bool = x.clone().is_finite().all().into_scalar().elem();
    if all_finite {
        Ok(())
    } else {
        Err(AttnError::NonFinite(name))
    }
}

use burn::tensor::ElementConversion;
