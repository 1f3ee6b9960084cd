//! The one library every function uses.
//!
//! - [`line`]: LINE webhook model, signature check, and the API's answers.
//! - [`shop`]: first-party shop events (`POST /events`).
//! - [`envelope`]: what goes on the reply and tag queues.
//! - [`ports`]: the small traits at the seams (idempotency store, friend store, queue, clock);
//!   the campaign path's own are in [`campaign::ports`].
//! - [`adapters`]: the ports' implementations, one folder a technology (DynamoDB, SQS, LINE's
//!   API over HTTP) and their in-memory twins for the logic's tests.
//! - [`ingest`]: claim, record, enqueue: the ingestion pipeline behind the webhook function.
//! - [`rules`]: reply rules: file format, compiled matcher (versioned in
//!   [`adapters::dynamodb::rules`]).
//! - [`segment`]: segment expressions (which friends a push goes to), parsed and evaluated.
//! - [`config`]: typed settings read once from the environment; [`aws`]: SDK clients from it;
//!   [`secrets`]: the channel's secrets (Secrets Manager on AWS, the environment locally).
//! - [`batch`]: SQS batches with partial failures, in FIFO group order.
//! - [`campaign`]: campaigns: the domain (files, plans and prices, batches, caps), its ports, and
//!   the use cases (planning, sending, resuming, the people's commands).

// No panics on data from outside: a panic fails the whole batch or request.
#![cfg_attr(not(test), deny(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing, clippy::panic))]

pub mod adapters;
pub mod aws;
pub mod batch;
pub mod campaign;
pub mod config;
pub mod costs;
pub mod envelope;
pub mod ingest;
pub mod line;
pub mod logging;
pub mod names;
pub mod ports;
pub mod rules;
pub mod secrets;
pub mod segment;
pub mod shop;
pub mod tagging;
