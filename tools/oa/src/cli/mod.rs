//! The `oa` binary's command groups that are large enough for a file of their own (the rest are in
//! `main.rs`; what they call is in the `oa` library).

pub(crate) mod campaign;
pub(crate) mod costs;
