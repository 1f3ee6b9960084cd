//! DynamoDB adapters, one file for what each stores:
//! - [`ingest`]: the events table's idempotency records and the friends' follow state;
//! - [`tags`]: tags and the segment index over them;
//! - [`rules`]: published rules and account settings, versioned;
//! - [`campaigns`], [`batches`], [`caps`]: the campaign path's items (a campaign, its batches
//!   and the account budget, the friends' caps and opt-outs), behind [`crate::campaign::ports`];
//! - [`schedule`]: the fleet's send schedule;
//! - [`usage`]: what each campaign run cost to plan and send;
//! - [`attr`] and [`call`]: attribute values, conditional calls and transactions.

pub mod attr;
pub mod batches;
pub mod call;
pub mod campaigns;
pub mod capacity;
pub mod caps;
pub mod counters;
pub mod ingest;
pub mod rules;
pub mod schedule;
pub mod tags;
pub mod usage;
