//! Campaigns: pushes to a segment, capped per friend, priced before they are sent, delivered
//! exactly once.
//!
//! - [`file`]: the campaign file and the account settings, as people write them.
//! - [`price`]: LINE plans (presets and custom) and what a month's messages cost.
//! - [`model`]: states, counters, the holdout draw, cap periods, queue messages.
//! - [`store`]: campaigns, batches and caps in DynamoDB.
//! - [`plan`]: preview and planning (the same classification).
//! - [`send`]: one batch to LINE, exactly once.

pub mod file;
pub mod model;
pub mod plan;
pub mod price;
pub mod send;
pub mod store;
