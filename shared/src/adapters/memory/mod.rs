//! In-memory twins of the adapters, for the logic's tests and benchmarks: the same conditions as
//! DynamoDB, a LINE that remembers retry keys for 24 hours as LINE does, queues that keep what was
//! sent. The contract suite (`tests/tests/contract.rs`) runs the same tests against these and the
//! real ones.
//! - [`ingest`]: idempotency records, follow state, FIFO queues;
//! - [`campaigns`] and [`caps`]: campaigns, batches, the account budget, caps and opt-outs;
//! - [`line`]: LINE's multicast and quota; [`queue`]: a work queue; [`schedule`]: the send schedule;
//! - [`segment`]: the segment index (tags and followers, by shard).

pub mod campaigns;
pub mod caps;
pub mod ingest;
pub mod line;
pub mod queue;
pub mod schedule;
pub mod segment;
