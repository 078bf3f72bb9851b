//! The tokenizer stored in a GGUF file (GPT-2 style byte-level BPE), built with the
//! `tokenizers` crate.

use tokenizers::decoders::byte_level::ByteLevel as ByteLevelDecoder;
use tokenizers::models::bpe::{Vocab, BPE};
use tokenizers::pre_tokenizers::byte_level::ByteLevel;
use tokenizers::pre_tokenizers::digits::Digits;
use tokenizers::pre_tokenizers::sequence::Sequence;
use tokenizers::pre_tokenizers::PreTokenizerWrapper;
use tokenizers::{AddedToken, Tokenizer};

use crate::error::{ModelError, ModelResult};
use crate::gguf::{GgufFile, GgufValue};

/// Text to token ids and back, as the model was trained.
pub struct GgufTokenizer {
    inner: Tokenizer,
    /// Beginning-of-sequence token, if the file names one.
    pub bos: Option<u32>,
    /// End-of-sequence token, if the file names one.
    pub eos: Option<u32>,
}

impl GgufTokenizer {
    /// Builds the tokenizer of `file` (`tokenizer.ggml.model` must be `gpt2`).
    pub fn from_gguf(file: &GgufFile) -> ModelResult<Self> {
        let kind = file.string("tokenizer.ggml.model")?;
        if kind != "gpt2" {
            return Err(ModelError::Format(format!(
                "tokenizer model {kind:?} (only gpt2-style BPE is supported)"
            )));
        }
        let tokens = file.strings("tokenizer.ggml.tokens")?;
        let vocab: Vocab = tokens.iter().enumerate().map(|(i, t)| (t.to_string(), i as u32)).collect();
        let merges = file
            .strings("tokenizer.ggml.merges")?
            .into_iter()
            .map(|m| {
                m.split_once(' ')
                    .map(|(a, b)| (a.to_string(), b.to_string()))
                    .ok_or_else(|| ModelError::Format(format!("merge {m:?}")))
            })
            .collect::<ModelResult<Vec<_>>>()?;
        let bpe = BPE::builder()
            .vocab_and_merges(vocab, merges)
            .build()
            .map_err(|e| ModelError::Format(format!("BPE: {e}")))?;
        let mut inner = Tokenizer::new(bpe);
        inner.with_pre_tokenizer(Some(Sequence::new(vec![
            PreTokenizerWrapper::Digits(Digits::new(true)),
            PreTokenizerWrapper::ByteLevel(ByteLevel::new(false, true, true)),
        ])));
        inner.with_decoder(Some(ByteLevelDecoder::default()));
        // Control tokens (type 3) such as <|im_start|> are matched whole, never split.
        if let Some(GgufValue::Array(types)) = file.metadata.get("tokenizer.ggml.token_type") {
            let special: Vec<AddedToken> = types
                .iter()
                .zip(&tokens)
                .filter(|(kind, _)| matches!(kind, GgufValue::Int(3) | GgufValue::Uint(3)))
                .map(|(_, t)| AddedToken::from(t.to_string(), true))
                .collect();
            inner.add_special_tokens(&special);
        }
        let id = |key: &str| match file.optional_uint(key)? {
            Some(v) if v < tokens.len() as u64 => Ok(Some(v as u32)),
            Some(v) => Err(ModelError::Format(format!("{key} is {v}, past the {} tokens", tokens.len()))),
            None => Ok(None),
        };
        Ok(Self { bos: id("tokenizer.ggml.bos_token_id")?, eos: id("tokenizer.ggml.eos_token_id")?, inner })
    }

    /// Token ids of `text` (no BOS added).
    pub fn encode(&self, text: &str) -> ModelResult<Vec<u32>> {
        let encoding =
            self.inner.encode(text, false).map_err(|e| ModelError::Format(format!("encode: {e}")))?;
        Ok(encoding.get_ids().to_vec())
    }

    /// Text of `ids`.
    pub fn decode(&self, ids: &[u32]) -> ModelResult<String> {
        self.inner.decode(ids, false).map_err(|e| ModelError::Format(format!("decode: {e}")))
    }

    /// Vocabulary size, special tokens included.
    pub fn vocab_size(&self) -> usize {
        self.inner.get_vocab_size(true)
    }
}
