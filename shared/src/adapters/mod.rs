//! Implementations of the ports ([`crate::ports`], [`crate::campaign::ports`]), one folder a
//! technology and one file for what each stores: [`dynamodb`], [`sqs`], [`line`] (LINE's
//! Messaging API over HTTP) for real use; [`memory`], their in-memory twins, for the logic's tests
//! (a contract suite runs the same tests against both). [`sdk`]: AWS SDK errors described.
//! [`sqs_requests`] and [`dynamodb::capacity`]: what a client's calls are billed, counted.

pub mod dynamodb;
pub mod line;
pub mod memory;
pub mod sdk;
pub mod sqs;
pub mod sqs_requests;
