//! The webhook function: LINE webhooks on `POST /webhook`, shop events on `POST /events`.
//! `main.rs` wires it; [`handler::function_handler`] is all it does.

pub mod config;
pub mod handler;

pub use handler::{function_handler, Deps, MAX_BODY_BYTES};
