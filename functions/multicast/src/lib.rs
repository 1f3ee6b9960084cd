//! multicast: consumes multicast-queue and sends each batch to LINE exactly once.

// No panics on data from outside: a panic fails the whole batch or request.
#![cfg_attr(not(test), deny(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing, clippy::panic))]

pub mod config;
pub mod handler;

pub use handler::{function_handler, Deps};
