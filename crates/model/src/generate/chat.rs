//! Chat prompts for instruct models: the Jinja template a GGUF file carries in
//! `tokenizer.chat_template`, rendered with minijinja (Python string methods enabled, as
//! Hugging Face templates use them).

use minijinja::{Environment, ErrorKind};
use serde::Serialize;

use crate::error::{ModelError, ModelResult};
use crate::gguf::{GgufFile, GgufValue};

/// The metadata key of the template.
pub const CHAT_TEMPLATE_KEY: &str = "tokenizer.chat_template";

/// One turn of a conversation.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ChatMessage {
    /// `system`, `user` or `assistant`.
    pub role: String,
    /// The text of the turn.
    pub content: String,
}

impl ChatMessage {
    /// A turn of `role`.
    pub fn new(role: impl Into<String>, content: impl Into<String>) -> Self {
        Self { role: role.into(), content: content.into() }
    }

    /// A user turn.
    pub fn user(content: impl Into<String>) -> Self {
        Self::new("user", content)
    }

    /// A system turn.
    pub fn system(content: impl Into<String>) -> Self {
        Self::new("system", content)
    }
}

/// A model's chat template with the special tokens it refers to.
#[derive(Debug, Clone)]
pub struct ChatTemplate {
    source: String,
    bos_token: String,
    eos_token: String,
}

#[derive(Serialize)]
struct Context<'a> {
    messages: &'a [ChatMessage],
    add_generation_prompt: bool,
    bos_token: &'a str,
    eos_token: &'a str,
}

impl ChatTemplate {
    /// A template from its Jinja source; `bos_token` and `eos_token` are the texts the
    /// template may insert.
    pub fn new(
        source: impl Into<String>,
        bos_token: impl Into<String>,
        eos_token: impl Into<String>,
    ) -> Self {
        Self { source: source.into(), bos_token: bos_token.into(), eos_token: eos_token.into() }
    }

    /// The template of `file`, or `None` when it has none (a base model).
    pub fn from_gguf(file: &GgufFile) -> ModelResult<Option<Self>> {
        let source = match file.metadata.get(CHAT_TEMPLATE_KEY) {
            None => return Ok(None),
            Some(GgufValue::String(s)) => s.clone(),
            Some(other) => {
                return Err(ModelError::Format(format!("{CHAT_TEMPLATE_KEY} is {}", other.describe())))
            }
        };
        let tokens = file.strings("tokenizer.ggml.tokens")?;
        let token = |key: &str| -> ModelResult<String> {
            Ok(file
                .optional_uint(key)?
                .and_then(|id| tokens.get(id as usize))
                .map_or_else(String::new, |t| t.to_string()))
        };
        Ok(Some(Self::new(
            source,
            token("tokenizer.ggml.bos_token_id")?,
            token("tokenizer.ggml.eos_token_id")?,
        )))
    }

    /// The prompt text of `messages`; with `add_generation_prompt` it ends where the
    /// assistant's answer begins.
    pub fn render(&self, messages: &[ChatMessage], add_generation_prompt: bool) -> ModelResult<String> {
        let mut env = Environment::new();
        minijinja_contrib::add_to_environment(&mut env);
        env.set_unknown_method_callback(minijinja_contrib::pycompat::unknown_method_callback);
        env.add_function("raise_exception", |message: String| -> Result<String, minijinja::Error> {
            Err(minijinja::Error::new(ErrorKind::InvalidOperation, message))
        });
        let fail = |e: minijinja::Error| ModelError::Generation(format!("chat template: {e}"));
        let template = env.template_from_str(&self.source).map_err(fail)?;
        let context = Context {
            messages,
            add_generation_prompt,
            bos_token: &self.bos_token,
            eos_token: &self.eos_token,
        };
        template.render(context).map_err(fail)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const CHATML: &str = "{% for message in messages %}{{'<|im_start|>' + message['role'] + '\\n' + \
        message['content'].strip() + '<|im_end|>\\n'}}{% endfor %}\
        {% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}";

    #[test]
    fn renders_turns_in_order_with_the_generation_prompt() {
        let template = ChatTemplate::new(CHATML, "<s>", "</s>");
        let messages = [ChatMessage::system("Be brief."), ChatMessage::user("  Hi there \n")];
        let text = template.render(&messages, true).unwrap();
        assert_eq!(
            text,
            "<|im_start|>system\nBe brief.<|im_end|>\n<|im_start|>user\nHi there<|im_end|>\n<|im_start|>assistant\n"
        );
        assert!(!template.render(&messages, false).unwrap().ends_with("assistant\n"));
    }

    #[test]
    fn special_tokens_and_exceptions_reach_the_template() {
        let template =
            ChatTemplate::new("{{ bos_token }}{{ messages[0].content }}{{ eos_token }}", "<s>", "</s>");
        assert_eq!(template.render(&[ChatMessage::user("x")], false).unwrap(), "<s>x</s>");
        let strict = ChatTemplate::new(
            "{% if messages[0].role != 'user' %}{{ raise_exception('user first') }}{% endif %}ok",
            "",
            "",
        );
        let error = strict.render(&[ChatMessage::system("x")], true).unwrap_err().to_string();
        assert!(error.contains("user first"), "{error}");
        let broken = ChatTemplate::new("{% for %}", "", "").render(&[], true).unwrap_err().to_string();
        assert!(broken.contains("chat template"), "{broken}");
    }
}
