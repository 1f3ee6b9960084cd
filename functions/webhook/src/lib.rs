//! The webhook function: LINE webhooks on `POST /webhook`, shop events on `POST /events`.
//! `main.rs` wires it; [`handler::function_handler`] is all it does.

// No panics on data from outside: a panic fails the whole batch or request.
#![cfg_attr(not(test), deny(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing, clippy::panic))]

pub mod config;
pub mod handler;

pub use handler::{function_handler, Deps, MAX_BODY_BYTES};
