//! LINE Messaging API: webhook model and signature check.

pub mod signature;
pub mod webhook;
