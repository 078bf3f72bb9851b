//! Retrieval tasks in the manner of RULER's needle-in-a-haystack tasks: facts ("needles")
//! hidden at chosen depths of filler text, asked for at the end, and the answer checker.
//!
//! A prompt comes in two parts, so that a protocol can run them differently: the context
//! (instructions, filler and needles) and the question (with the start of the answer, which
//! the model completes).

use std::fmt;
use std::path::Path;
use std::str::FromStr;

use burn_sparse_attn_core::rng::SplitMix64;
use serde::{Serialize, Serializer};

use crate::error::{ModelError, ModelResult};
use crate::tokenizer::GgufTokenizer;

/// A retrieval task.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum RetrievalTask {
    /// One five-digit pass key in repeated filler sentences (the classic passkey test).
    Passkey,
    /// Four needles with different keys in book text; one key is asked.
    MultiKey,
    /// Two needles with the same key and different values in book text; both are asked.
    MultiValue,
    /// The asked needle among seven needles of other keys, in book text.
    Distractors,
}

impl RetrievalTask {
    /// Every task.
    pub const ALL: [RetrievalTask; 4] = [Self::Passkey, Self::MultiKey, Self::MultiValue, Self::Distractors];

    /// Short name: command-line argument and JSON value.
    pub fn name(self) -> &'static str {
        match self {
            Self::Passkey => "passkey",
            Self::MultiKey => "multi-key",
            Self::MultiValue => "multi-value",
            Self::Distractors => "distractors",
        }
    }
}

impl fmt::Display for RetrievalTask {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for RetrievalTask {
    type Err = ModelError;

    fn from_str(s: &str) -> ModelResult<Self> {
        Self::ALL.into_iter().find(|t| t.name() == s).ok_or_else(|| {
            let names: Vec<_> = Self::ALL.iter().map(|t| t.name()).collect();
            ModelError::Eval(format!("unknown retrieval task {s:?}; the tasks are {}", names.join(", ")))
        })
    }
}

impl Serialize for RetrievalTask {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(self.name())
    }
}

/// Tokens a prompt keeps for its question: a prompt at `context` tokens has a context part
/// of exactly `context - QUESTION_ROOM` tokens, then its question. Every prompt at one
/// context thus shares the length of its context part whatever its task and keys (the decode
/// protocol prefills them densely as one batch), and stays within `context`.
pub const QUESTION_ROOM: usize = 64;

/// A retrieval prompt and what its answer must hold.
#[derive(Debug, Clone)]
pub struct RetrievalPrompt {
    /// Instructions, filler and needles.
    pub context: Vec<u32>,
    /// The question and the start of the answer, which the model completes.
    pub question: Vec<u32>,
    /// Every one of these must appear in the answer (see [`answer_holds`]).
    pub answers: Vec<String>,
}

impl RetrievalPrompt {
    /// Context and question, in order.
    pub fn tokens(&self) -> Vec<u32> {
        [self.context.as_slice(), &self.question].concat()
    }

    /// Tokens to generate: the answers' digits (one token each, at most) and separators.
    pub fn answer_tokens(&self) -> usize {
        self.answers.iter().map(|a| a.len() + 3).sum::<usize>() + 2
    }
}

/// Filler sentences from one or more books, one list per book.
#[derive(Debug, Clone)]
pub struct Haystack {
    books: Vec<Vec<String>>,
}

/// Consecutive sentences taken from one book before the filler moves to the next.
const SENTENCES_PER_BOOK: usize = 24;

impl Haystack {
    /// The sentences of `texts` (one text per book); errors when a text has too few.
    pub fn from_texts(texts: &[String]) -> ModelResult<Self> {
        let books: Vec<Vec<String>> = texts.iter().map(|t| sentences(t)).collect();
        match books.iter().map(Vec::len).min() {
            Some(n) if n >= 4 * SENTENCES_PER_BOOK => Ok(Self { books }),
            Some(n) => Err(ModelError::Eval(format!(
                "a haystack book has {n} sentences, at least {} are needed",
                4 * SENTENCES_PER_BOOK
            ))),
            None => Err(ModelError::Eval("a haystack needs at least one book".into())),
        }
    }

    /// The books at `paths` (text files).
    pub fn from_files(paths: &[impl AsRef<Path>]) -> ModelResult<Self> {
        let texts = paths
            .iter()
            .map(|p| {
                std::fs::read_to_string(p.as_ref()).map_err(|e| {
                    ModelError::Eval(format!("reading haystack book {}: {e}", p.as_ref().display()))
                })
            })
            .collect::<ModelResult<Vec<_>>>()?;
        Self::from_texts(&texts)
    }

    /// An endless run of filler: runs of consecutive sentences from each book in turn, each
    /// run from a place drawn from `rng`.
    fn filler<'a>(&'a self, rng: &'a mut SplitMix64) -> impl Iterator<Item = &'a str> + 'a {
        (0..).flat_map(move |run: usize| {
            let book = &self.books[run % self.books.len()];
            let start = (rng.next_u64() as usize) % (book.len() - SENTENCES_PER_BOOK);
            book[start..start + SENTENCES_PER_BOOK].iter().map(String::as_str)
        })
    }
}

/// The sentences of `text`, whitespace collapsed, split after `.`, `?` and `!`.
fn sentences(text: &str) -> Vec<String> {
    let words: Vec<&str> = text.split_whitespace().collect();
    let mut out = Vec::new();
    let mut current: Vec<&str> = Vec::new();
    for word in words {
        current.push(word);
        let ends = word.trim_end_matches(['"', '\'', '’', '”', ')', '_']).ends_with(['.', '?', '!']);
        if ends || current.len() >= 80 {
            out.push(current.join(" "));
            current.clear();
        }
    }
    out
}

const PASSKEY_FILLER: &str =
    "The grass is green. The sky is blue. The sun is yellow. Here we go. There and back again.";
const PASSKEY_INTRO: &str =
    "There is an important piece of information hidden inside a lot of irrelevant text. \
Find it and memorize it. I will quiz you about it.";
const NEEDLE_INTRO: &str = "Some special magic numbers are hidden within the following text. \
Make sure to memorize them. I will quiz you about the numbers afterwards.";
const ADJECTIVES: [&str; 24] = [
    "amber", "brave", "calm", "dusty", "eager", "faint", "gentle", "hollow", "icy", "jolly", "keen",
    "lively", "misty", "noble", "odd", "pale", "quiet", "rusty", "silent", "tidy", "upper", "vivid", "wild",
    "young",
];
const NOUNS: [&str; 24] = [
    "anchor", "badger", "candle", "dragon", "engine", "falcon", "garden", "harbor", "island", "jacket",
    "kettle", "lantern", "meadow", "needle", "orchard", "pepper", "quarry", "river", "saddle", "tower",
    "umbrella", "valley", "walnut", "yacht",
];

/// Values asked by the multi-value task, and needles of other keys in the distractors task.
/// RULER asks for four values among more distractors; a 135M model fails most of those
/// even with dense attention (4 of 10 at 1K with three values, 1 of 10 among six keys that
/// share a word with the asked one), which would leave nothing for the methods to lose.
const MULTI_VALUES: usize = 2;
const DISTRACTORS: usize = 7;

/// `count` different keys ("amber-falcon"), drawn from `rng`.
fn keys(rng: &mut SplitMix64, count: usize) -> Vec<String> {
    let all = ADJECTIVES.len() * NOUNS.len();
    assert!(count <= all, "{count} keys asked, {all} exist");
    let mut order: Vec<usize> = (0..all).collect();
    for i in 0..count {
        let j = i + (rng.next_u64() as usize) % (all - i);
        order.swap(i, j);
    }
    order[..count]
        .iter()
        .map(|&i| format!("{}-{}", ADJECTIVES[i / NOUNS.len()], NOUNS[i % NOUNS.len()]))
        .collect()
}

/// A number of `digits` digits (no leading zero), drawn from `rng`.
fn number(rng: &mut SplitMix64, digits: u32) -> String {
    let low = 10u64.pow(digits - 1);
    (low + rng.next_u64() % (9 * low)).to_string()
}

/// `depth` for the asked needle (`i == 0`), a depth drawn from `rng` for the others.
fn random_depth(rng: &mut SplitMix64, i: usize, depth: f64) -> f64 {
    if i == 0 {
        depth
    } else {
        (rng.next_u64() % 1001) as f64 / 1000.0
    }
}

fn magic_needle(key: &str, value: &str) -> String {
    format!("One of the special magic numbers for {key} is: {value}.")
}

/// Which length the prompts at one context share, so that they run as one batch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PromptFit {
    /// The context part: exactly `context -` [`QUESTION_ROOM`] tokens, then a question of its
    /// own length (the decode protocol prefills the context parts as one batch and decodes
    /// the questions in lockstep).
    ContextPart,
    /// The whole prompt: exactly `context - QUESTION_ROOM / 2` tokens, the filler taking
    /// what the question leaves (sparse prefill runs whole prompts, and a batch needs one
    /// length: with [`PromptFit::ContextPart`] a task's keys of different token counts split
    /// its prompts into several batches, each paying its own decode steps).
    Whole,
}

/// A prompt of `task` within `context` tokens, of the length `fit` says (filled with as much
/// filler as fits), then the question; its asked needle at `depth` (0 = start of the
/// filler, 1 = end), everything drawn from `seed`. `haystack` is needed by the tasks whose
/// filler is book text.
pub fn retrieval_prompt(
    task: RetrievalTask,
    tokenizer: &GgufTokenizer,
    haystack: Option<&Haystack>,
    context: usize,
    depth: f64,
    seed: u64,
    fit: PromptFit,
) -> ModelResult<RetrievalPrompt> {
    let mut rng = SplitMix64::new(seed);
    // Needles: (depth, text); the first is the asked one, the others at random depths.
    let (intro, needles, question, answers) = match task {
        RetrievalTask::Passkey => {
            let key = number(&mut rng, 5);
            let needle = format!("The pass key is {key}. Remember it. {key} is the pass key.");
            let question = "\nWhat is the pass key? The pass key is".to_string();
            (PASSKEY_INTRO, vec![(depth, needle)], question, vec![key])
        }
        RetrievalTask::MultiKey | RetrievalTask::MultiValue | RetrievalTask::Distractors => {
            let (keys, values): (Vec<String>, Vec<String>) = match task {
                RetrievalTask::MultiKey => (keys(&mut rng, 4), (0..4).map(|_| number(&mut rng, 7)).collect()),
                RetrievalTask::MultiValue => {
                    let key = keys(&mut rng, 1).remove(0);
                    (vec![key; MULTI_VALUES], (0..MULTI_VALUES).map(|_| number(&mut rng, 7)).collect())
                }
                _ => (
                    keys(&mut rng, DISTRACTORS + 1),
                    (0..=DISTRACTORS).map(|_| number(&mut rng, 7)).collect(),
                ),
            };
            let needles: Vec<(f64, String)> = (0..keys.len())
                .map(|i| (random_depth(&mut rng, i, depth), magic_needle(&keys[i], &values[i])))
                .collect();
            let asked = &keys[0];
            if task == RetrievalTask::MultiValue {
                let q = format!(
                    "\nWhat are all the special magic numbers for {asked} mentioned in the provided text? \
The special magic numbers for {asked} mentioned in the provided text are"
                );
                (NEEDLE_INTRO, needles, q, values)
            } else {
                let q = format!(
                    "\nWhat is the special magic number for {asked} mentioned in the provided text? \
The special magic number for {asked} mentioned in the provided text is"
                );
                (NEEDLE_INTRO, needles, q, vec![values[0].clone()])
            }
        }
    };
    let encode = |text: &str| tokenizer.encode(text);
    let intro = encode(intro)?;
    let question_tokens = encode(&question)?;
    let needle_tokens: Vec<(f64, Vec<u32>)> =
        needles.iter().map(|(d, n)| Ok((*d, encode(&format!(" {n}"))?))).collect::<ModelResult<_>>()?;
    if question_tokens.len() > QUESTION_ROOM {
        return Err(ModelError::Eval(format!(
            "a {task} question has {} tokens, more than the {QUESTION_ROOM} a prompt keeps for it",
            question_tokens.len()
        )));
    }
    let fixed = intro.len() + needle_tokens.iter().map(|(_, t)| t.len()).sum::<usize>();
    let part = match fit {
        PromptFit::ContextPart => context.saturating_sub(QUESTION_ROOM),
        PromptFit::Whole => context.saturating_sub(QUESTION_ROOM / 2 + question_tokens.len()),
    };
    if fixed + 16 > part {
        return Err(ModelError::Eval(format!(
            "a {task} prompt needs more than {context} tokens ({} without filler); use a longer context",
            fixed + QUESTION_ROOM
        )));
    }
    // Filler pieces until the context part is full; the end of the first piece that does not
    // fit opens the filler, so that every context part has exactly `part` tokens.
    let mut pieces: Vec<Vec<u32>> = Vec::new();
    let mut front: Option<Vec<u32>> = None;
    let mut used = fixed;
    let mut push = |piece: Vec<u32>| {
        if used + piece.len() > part {
            let gap = part - used;
            front = (gap > 0).then(|| piece[piece.len() - gap..].to_vec());
            used = part;
            return false;
        }
        used += piece.len();
        pieces.push(piece);
        true
    };
    match task {
        RetrievalTask::Passkey => {
            let piece = encode(&format!(" {PASSKEY_FILLER}"))?;
            while push(piece.clone()) {}
        }
        RetrievalTask::MultiKey | RetrievalTask::MultiValue | RetrievalTask::Distractors => {
            let haystack = haystack.ok_or_else(|| {
                ModelError::Eval(format!("the {task} task needs a haystack of books for its filler"))
            })?;
            let mut filler_rng = SplitMix64::new(seed ^ 0x9e37_79b9_7f4a_7c15);
            for sentence in haystack.filler(&mut filler_rng) {
                if !push(encode(&format!(" {sentence}"))?) {
                    break;
                }
            }
        }
    }
    pieces.splice(0..0, front);
    // Needles between filler pieces, at their depths; the asked one first where two meet.
    let mut placed: Vec<(usize, usize)> = needle_tokens
        .iter()
        .enumerate()
        .map(|(i, (d, _))| ((d.clamp(0.0, 1.0) * pieces.len() as f64).round() as usize, i))
        .collect();
    placed.sort();
    let mut prompt = intro;
    let mut next = placed.iter().peekable();
    for (p, piece) in pieces.iter().enumerate() {
        while let Some(&&(_, i)) = next.peek().filter(|(at, _)| *at == p) {
            prompt.extend(&needle_tokens[i].1);
            next.next();
        }
        prompt.extend(piece);
    }
    for &(_, i) in next {
        prompt.extend(&needle_tokens[i].1);
    }
    Ok(RetrievalPrompt { context: prompt, question: question_tokens, answers })
}

/// Whether `answer` holds every one of `expected` as a whole number (not inside a longer
/// run of digits).
pub fn answer_holds(answer: &str, expected: &[String]) -> bool {
    let numbers: Vec<&str> = answer.split(|c: char| !c.is_ascii_digit()).filter(|s| !s.is_empty()).collect();
    expected.iter().all(|e| numbers.contains(&e.as_str()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn strings(items: &[&str]) -> Vec<String> {
        items.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn answers_must_hold_every_number_whole() {
        assert!(answer_holds(" 4821937.", &strings(&["4821937"])));
        assert!(answer_holds(" 12345, 67890 and 11111", &strings(&["67890", "12345"])));
        assert!(!answer_holds(" 12345, 67890", &strings(&["67890", "12345", "11111"])));
        assert!(!answer_holds(" 1234567", &strings(&["123456"])), "a prefix of a longer number");
        assert!(!answer_holds(" 91234567", &strings(&["1234567"])), "a suffix of a longer number");
        assert!(!answer_holds(" the number is", &strings(&["1234567"])));
        assert!(answer_holds("is:1234567.", &strings(&["1234567"])));
        assert!(answer_holds("anything", &[]));
    }

    #[test]
    fn sentences_split_after_end_marks() {
        let text = "It was  late. Was it?\n“Yes!” she said. And then\nmore";
        assert_eq!(sentences(text), ["It was late.", "Was it?", "“Yes!”", "she said."]);
    }

    #[test]
    fn keys_are_distinct_and_numbers_have_their_digits() {
        let mut rng = SplitMix64::new(3);
        let mut all = keys(&mut rng, ADJECTIVES.len() * NOUNS.len());
        all.sort();
        all.dedup();
        assert_eq!(all.len(), ADJECTIVES.len() * NOUNS.len());
        for _ in 0..100 {
            assert_eq!(number(&mut rng, 7).len(), 7);
        }
    }

    #[test]
    fn task_names_round_trip() {
        for task in RetrievalTask::ALL {
            assert_eq!(task.name().parse::<RetrievalTask>().unwrap(), task);
        }
        assert!("needle".parse::<RetrievalTask>().unwrap_err().to_string().contains("multi-key"));
    }
}
