//! Campaigns: pushes to a segment, capped per friend, priced before they are sent, delivered
//! exactly once.
//!
//! The domain (plain values, no AWS crate; tested as values):
//! - [`file`]: the campaign file and the account settings, as people write them;
//! - [`price`]: LINE plans (presets and custom) and what a month's messages cost;
//! - [`model`]: the campaign as stored, its states and counters, the holdout draw, cap periods,
//!   the account policy, queue messages;
//! - [`batch`]: a batch and how it ended; [`caps`]: the caps as one friend meets them;
//! - [`classify`]: who of a page gets the campaign; [`pace`]: the fleet's send schedule, as
//!   arithmetic.
//!
//! [`ports`]: the seams the use cases are written against (campaigns, batches, caps, opt-outs,
//! the people's commands, LINE, the schedule); their adapters live in [`crate::adapters`].
//!
//! The use cases, each tested in memory:
//! - [`plan`]: preview and planning; [`send`]: one batch to LINE, exactly once;
//! - [`resume`]: a paused campaign back on its way; [`sweep`]: the scheduled look that finishes,
//!   requeues and counts for the alarms; [`admin`]: what people do (`oa campaign`,
//!   `oa suppress`).

pub mod admin;
pub mod batch;
pub mod caps;
pub mod classify;
pub mod file;
pub mod give_back;
pub mod lift;
pub mod model;
pub mod pace;
pub mod plan;
pub mod ports;
pub mod price;
pub mod resume;
pub mod send;
pub mod sweep;
