//! LINE Messaging API: webhook model, signature check and the API client.

pub mod client;
pub mod json;
pub mod signature;
pub mod webhook;
