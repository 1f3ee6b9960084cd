//! What each campaign run cost to plan and send: one usage item per function that worked on it
//! (`c#<id>` / `usage#<run>#<function>`), summed with `ADD` ([`crate::costs::meter`] writes them,
//! `oa costs` reads them). Apart from the run's counter shards: those change in the same
//! transactions as the batches they count, and no metering write joins those.

use std::collections::BTreeMap;

use aws_sdk_dynamodb::types::AttributeValue;

use super::attr::{s, text, Item};
use super::call::err;
use super::campaigns::DynamoCampaigns;
use crate::adapters::sdk::describe;
use crate::costs::model::Usage;
use crate::ports::BackendError;

impl DynamoCampaigns {
    /// Adds `usage` (one function's share of an invocation that worked on run `run` of campaign
    /// `id`) to the run's usage item for that function (`c#<id>` / `usage#<run>#<function>`), with
    /// `ADD`: what planning and sending a campaign cost can be read back when metrics no longer
    /// tell campaigns apart. A campaign created again under its id starts a new run, and a new sum.
    pub async fn add_usage(&self, id: &str, run: &str, function: &str, usage: &Usage) -> Result<(), BackendError> {
        let fields = [
            ("invocations", usage.invocations),
            ("billedMs", usage.billed_ms),
            ("readUnits", usage.read_units),
            ("writeUnits", usage.write_units),
            ("sqsRequests", usage.sqs_requests),
            ("sqsFifoRequests", usage.sqs_fifo_requests),
            ("logBytes", usage.log_bytes),
        ];
        let mut update = self
            .client
            .update_item()
            .table_name(&self.campaigns)
            .key("pk", s(&format!("c#{id}")))
            .key("sk", s(&format!("usage#{run}#{function}")))
            .update_expression(format!(
                "ADD {}",
                fields.iter().map(|(name, _)| format!("{name} :{name}")).collect::<Vec<_>>().join(", ")
            ));
        for (name, value) in fields {
            update = update.expression_attribute_values(format!(":{name}"), AttributeValue::N(format!("{value}")));
        }
        update.send().await.map(|_| ()).map_err(|e| err("UpdateItem", describe(&e)))
    }

    /// What run `run` of campaign `id` used, per function (the functions that worked on it).
    pub async fn usage(&self, id: &str, run: &str) -> Result<BTreeMap<String, Usage>, BackendError> {
        let prefix = format!("usage#{run}#");
        let items = self.items_under(id, &prefix).await?;
        let number = |item: &Item, name: &str| {
            item.get(name).and_then(|v| v.as_n().ok()).and_then(|n| n.parse::<f64>().ok()).unwrap_or(0.0)
        };
        Ok(items
            .iter()
            .filter_map(|item| {
                let function = text(item, "sk")?.strip_prefix(&prefix)?.to_string();
                let usage = Usage {
                    invocations: number(item, "invocations"),
                    billed_ms: number(item, "billedMs"),
                    read_units: number(item, "readUnits"),
                    write_units: number(item, "writeUnits"),
                    sqs_requests: number(item, "sqsRequests"),
                    sqs_fifo_requests: number(item, "sqsFifoRequests"),
                    log_bytes: number(item, "logBytes"),
                };
                Some((function, usage))
            })
            .collect())
    }
}
