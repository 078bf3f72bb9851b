//! Integration tests of hash-mapping training, linked into one binary.

mod common;
mod resume;
mod training;
