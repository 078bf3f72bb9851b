//! Text of generated tokens as they come: a token can end in the middle of a UTF-8
//! character (byte-level BPE), so text is released only up to the last complete character.

use crate::error::ModelResult;
use crate::tokenizer::GgufTokenizer;

/// Turns a stream of token ids into a stream of text pieces whose concatenation is the
/// decoded text of all the tokens.
pub struct TextStream<'a> {
    tokenizer: &'a GgufTokenizer,
    tokens: Vec<u32>,
    released: usize,
}

impl<'a> TextStream<'a> {
    /// A stream decoding with `tokenizer`.
    pub fn new(tokenizer: &'a GgufTokenizer) -> Self {
        Self { tokenizer, tokens: Vec::new(), released: 0 }
    }

    /// Adds `token`; returns the text it completes (empty while a character is unfinished).
    pub fn push(&mut self, token: u32) -> ModelResult<String> {
        self.tokens.push(token);
        let text = self.tokenizer.decode(&self.tokens)?;
        // An unfinished character decodes as U+FFFD at the end: hold it back.
        let complete = text.trim_end_matches('\u{FFFD}');
        if complete.len() <= self.released || !complete.is_char_boundary(self.released) {
            return Ok(String::new());
        }
        let piece = complete[self.released..].to_string();
        self.released = complete.len();
        Ok(piece)
    }

    /// The text not yet released (an unfinished character at the end, as decoded).
    pub fn finish(self) -> ModelResult<String> {
        let text = self.tokenizer.decode(&self.tokens)?;
        Ok(text.get(self.released..).unwrap_or_default().to_string())
    }
}
