//! What running the product costs: AWS prices per region ([`prices`], from `infra/prices.yaml`)
//! and the arithmetic that turns measured usage into money ([`model`]): each function's Lambda,
//! DynamoDB, SQS and log cost in USD, the stack's fixed monthly cost, and a campaign's LINE bill,
//! allocated and marginal, in the account's currency.

pub mod meter;
pub mod model;
pub mod prices;
pub mod report;
