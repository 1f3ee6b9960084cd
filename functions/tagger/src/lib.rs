//! tagger: consumes tag-queue and keeps every friend's tags as the rules say.

pub mod config;
pub mod handler;

pub use handler::{function_handler, Deps};
