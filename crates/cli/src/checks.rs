//! Checks of the commands' arguments and files, run before the work they would spoil: each
//! refusal is one line that names the option and the problem, instead of a panic, a run
//! past the model's context or a table computed from nonsense.

use std::io::Read;
use std::path::{Component, Path, PathBuf};

use burn_sparse_attn_model::Llama;

use crate::backend::Backend;
use crate::setup::Error;

/// Largest text file read (`--text`, training and held-out texts).
pub const MAX_TEXT_BYTES: u64 = 64 << 20;

/// Fewest tokens of a passage or prompt: perplexity scores the second half, which needs a
/// token to predict from and one to predict.
pub const MIN_TOKENS: usize = 3;

/// Errors unless every value of `option` is at least 1.
pub fn positive(option: &str, values: &[usize]) -> Result<(), Error> {
    if values.is_empty() {
        return Err(format!("{option}: give at least one value").into());
    }
    match values.iter().find(|&&v| v == 0) {
        Some(_) => Err(format!("{option} must be at least 1, got 0").into()),
        None => Ok(()),
    }
}

/// Errors unless every token count of `option` lies in `MIN_TOKENS..=context` (the
/// model's trained context).
pub fn token_counts(option: &str, values: &[usize], context: usize) -> Result<(), Error> {
    if values.is_empty() {
        return Err(format!("{option}: give at least one value").into());
    }
    match values.iter().find(|&&v| !(MIN_TOKENS..=context).contains(&v)) {
        Some(v) => Err(format!(
            "{option} is {v} tokens, outside {MIN_TOKENS}..={context} (the model's context is {context})"
        )
        .into()),
        None => Ok(()),
    }
}

/// Errors unless every value of `option` is finite and in `min..=max`.
pub fn in_range(option: &str, values: &[f64], min: f64, max: f64) -> Result<(), Error> {
    if values.is_empty() {
        return Err(format!("{option}: give at least one value").into());
    }
    match values.iter().find(|v| !(v.is_finite() && (min..=max).contains(*v))) {
        Some(v) => Err(format!("{option} is {v}, outside [{min}, {max}]").into()),
        None => Ok(()),
    }
}

/// Errors unless `value` of `option` is finite and above 0.
pub fn positive_real(option: &str, value: f64) -> Result<(), Error> {
    if value.is_finite() && value > 0.0 {
        Ok(())
    } else {
        Err(format!("{option} must be a positive number, got {value}").into())
    }
}

/// Errors unless every sparsity of `option` is a finite factor of at least 1.
pub fn sparsities(option: &str, values: &[f64]) -> Result<(), Error> {
    if values.is_empty() {
        return Err(format!("{option}: give at least one value").into());
    }
    match values.iter().find(|v| !(v.is_finite() && **v >= 1.0)) {
        Some(v) => Err(format!("{option} is {v}: a sparsity is a finite factor of at least 1").into()),
        None => Ok(()),
    }
}

/// Errors unless every dense layer is below `layers`.
pub fn dense_layers(values: &[usize], layers: usize) -> Result<(), Error> {
    match values.iter().find(|&&l| l >= layers) {
        Some(l) => Err(format!("--dense-layers {l}: the model has layers 0..{layers}").into()),
        None => Ok(()),
    }
}

/// Loads the hash mappings in `dir`, when given, to check them against `model` (layers,
/// heads, head dimension, shapes, finite weights) before any method runs.
pub fn hash_mappings(
    model: &Llama<Backend>,
    dir: Option<&Path>,
    device: &burn::tensor::Device<Backend>,
) -> Result<(), Error> {
    model.load_hash_mappings(dir, device)?;
    Ok(())
}

/// Errors unless `path` can be written: its folder exists and accepts a new file, and it
/// is not a folder itself. Checked before the run, so that hours of work are not lost.
pub fn output_file(option: &str, path: &Path) -> Result<(), Error> {
    if path.is_dir() {
        return Err(format!("{option} {}: is a folder, not a file", path.display()).into());
    }
    let parent = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    writable_dir(option, parent).map_err(|e| format!("{option} {}: {e}", path.display()).into())
}

/// Creates the folder `path` when missing and errors unless files can be written in it.
pub fn output_dir(option: &str, path: &Path) -> Result<(), Error> {
    std::fs::create_dir_all(path).map_err(|e| format!("{option} {}: {e}", path.display()))?;
    writable_dir(option, path).map_err(|e| format!("{option} {}: {e}", path.display()).into())
}

/// Writes and removes a probe file in `dir`.
fn writable_dir(option: &str, dir: &Path) -> Result<(), String> {
    if !dir.is_dir() {
        return Err(format!("the folder {} does not exist", dir.display()));
    }
    let probe = dir.join(format!(".bsa-write-check-{}", std::process::id()));
    std::fs::write(&probe, b"").map_err(|e| format!("cannot write in {} ({option}): {e}", dir.display()))?;
    let _ = std::fs::remove_file(&probe);
    Ok(())
}

/// Errors unless the input file `path` of `option` can be opened (checked before the
/// model loads; its size is limited when it is read).
pub fn input_file(option: &str, path: &Path) -> Result<(), Error> {
    std::fs::File::open(path).map(|_| ()).map_err(|e| format!("{option} {}: {e}", path.display()).into())
}

/// The UTF-8 text at `path`, refused when longer than [`MAX_TEXT_BYTES`] (read with that
/// limit, so that `/dev/zero` or a fifo ends in an error, not a hang).
pub fn read_text(path: &Path) -> Result<String, Error> {
    let file = std::fs::File::open(path).map_err(|e| format!("{}: {e}", path.display()))?;
    let mut bytes = Vec::new();
    file.take(MAX_TEXT_BYTES + 1).read_to_end(&mut bytes).map_err(|e| format!("{}: {e}", path.display()))?;
    if bytes.len() as u64 > MAX_TEXT_BYTES {
        return Err(format!(
            "{}: longer than {MAX_TEXT_BYTES} bytes, the most a text may have",
            path.display()
        )
        .into());
    }
    String::from_utf8(bytes).map_err(|e| format!("{}: not UTF-8 text ({e})", path.display()).into())
}

/// Whether `a` and `b` name the same file however written (`./x`, `dir/../x`, absolute):
/// compared canonicalised when both exist, else as normalised absolute paths.
pub fn same_file(a: &Path, b: &Path) -> bool {
    match (std::fs::canonicalize(a), std::fs::canonicalize(b)) {
        (Ok(a), Ok(b)) => a == b,
        _ => normalised(a) == normalised(b),
    }
}

/// `path` made absolute, without `.` and with `..` applied (no file-system access).
fn normalised(path: &Path) -> PathBuf {
    let absolute = std::env::current_dir().map(|d| d.join(path)).unwrap_or_else(|_| path.to_path_buf());
    let mut out = PathBuf::new();
    for part in absolute.components() {
        match part {
            Component::CurDir => {}
            Component::ParentDir => {
                out.pop();
            }
            other => out.push(other),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn token_counts_must_fit_the_context() {
        assert!(token_counts("--tokens", &[3, 8192], 8192).is_ok());
        for bad in [0, 2, 8193] {
            let error = token_counts("--tokens", &[bad], 8192).unwrap_err().to_string();
            assert!(error.starts_with("--tokens"), "{error}");
        }
        assert!(token_counts("--contexts", &[], 8192).is_err());
    }

    #[test]
    fn ranges_refuse_nan_and_out_of_range() {
        assert!(in_range("--depths", &[0.0, 0.5, 1.0], 0.0, 1.0).is_ok());
        for bad in [f64::NAN, -0.1, 1.5, f64::INFINITY] {
            assert!(in_range("--depths", &[0.5, bad], 0.0, 1.0).is_err(), "{bad}");
        }
        assert!(sparsities("--sparsity", &[0.5]).is_err() && sparsities("--sparsity", &[f64::NAN]).is_err());
        assert!(sparsities("--sparsities", &[1.0, 32.0]).is_ok());
        assert!(dense_layers(&[0, 29], 30).is_ok() && dense_layers(&[30], 30).is_err());
        assert!(positive("--trials", &[0]).is_err() && positive("--trials", &[1]).is_ok());
    }

    #[test]
    fn paths_are_compared_after_normalising() {
        let here = Path::new("models/x.gguf");
        assert!(same_file(here, Path::new("./models/../models/x.gguf")));
        assert!(same_file(here, &std::env::current_dir().unwrap().join("models/x.gguf")));
        assert!(!same_file(here, Path::new("models/y.gguf")));
    }

    #[test]
    fn outputs_need_an_existing_writable_folder() {
        let dir = std::env::temp_dir().join(format!("bsa-checks-{}", std::process::id()));
        assert!(output_dir("--out", &dir).is_ok());
        assert!(output_file("--json", &dir.join("r.json")).is_ok());
        assert!(output_file("--json", &dir).is_err());
        assert!(output_file("--json", &dir.join("missing/r.json")).is_err());
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn texts_are_read_with_a_limit() {
        let error = input_file("--text", Path::new("/no/such/book.txt")).unwrap_err().to_string();
        assert!(error.starts_with("--text /no/such/book.txt: "), "{error}");
        if Path::new("/dev/zero").exists() {
            let error = read_text(Path::new("/dev/zero")).unwrap_err().to_string();
            assert!(error.contains("longer than"), "{error}");
        }
    }
}
