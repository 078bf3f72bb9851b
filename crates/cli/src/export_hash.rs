//! `bsa export-hash`: HashAttention mappings (a folder of Burn records, as `bsa train-hash`
//! writes) to one safetensors file that Python tools read and `--hash-mappings` takes.

use std::path::PathBuf;

use burn_sparse_attn_core::hash::StoredPrecision;
use burn_sparse_attn_core::HashMappingsConfig;

use crate::backend::Backend;
use crate::checks;
use crate::setup::Error;

/// Options of `bsa export-hash`.
#[derive(clap::Args)]
pub struct ExportHashArgs {
    /// Mappings to read: a folder written by `bsa train-hash` (or a safetensors file).
    from: PathBuf,
    /// The safetensors file to write.
    to: PathBuf,
    /// Store 16-bit floats (half the size) instead of 32-bit.
    #[arg(long)]
    f16: bool,
}

/// Runs the export.
pub fn run(args: ExportHashArgs) -> Result<(), Error> {
    checks::output_file("TO", &args.to)?;
    let (config, mappings) = HashMappingsConfig::load_from::<Backend>(&args.from, &Default::default())?;
    let precision = if args.f16 { StoredPrecision::F16 } else { StoredPrecision::F32 };
    mappings.save_safetensors(&config, &args.to, precision)?;
    let bytes = std::fs::metadata(&args.to)?.len();
    println!("wrote {} ({} layers, {} bytes, {precision:?})", args.to.display(), config.layers, bytes);
    Ok(())
}
