//! Campaigns: pushes to a segment, capped per friend, priced before they are sent, delivered
//! exactly once.
//!
//! - [`file`]: the campaign file and the account settings, as people write them.
//! - [`price`]: LINE plans (presets and custom) and what a month's messages cost.
//! - [`model`]: states, counters, the holdout draw, cap periods, queue messages.
//! - [`ports`]: the seams the planner and the sender are written against; [`store`]: campaigns,
//!   batches and caps in DynamoDB; [`memory`]: the same in memory, with a LINE that remembers
//!   retry keys, for the logic's tests.
//! - [`plan`]: preview and planning (the same classification).
//! - [`send`]: one batch to LINE, exactly once.

pub mod file;
pub mod memory;
pub mod model;
pub mod pace;
pub mod plan;
pub mod ports;
pub mod price;
pub mod resume;
pub mod send;
pub mod store;
