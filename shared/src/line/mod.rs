//! LINE Messaging API: webhook model, signature check, and the API's answers (the client that
//! calls it is an adapter: [`crate::adapters::line`]).

pub mod answer;
pub mod json;
pub mod signature;
pub mod webhook;
