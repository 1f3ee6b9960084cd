//! keyword-reply: consumes reply-queue and answers with LINE's free reply API.

pub mod config;
pub mod handler;

pub use handler::{function_handler, Deps};
