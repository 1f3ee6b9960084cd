//! The local provisioner: creates the tables and queues that `infra/template.yaml` declares, in
//! DynamoDB Local and the SQS emulator, so local and AWS cannot drift.
//!
//! It understands what the template uses for these resources: `!Sub` with `${AWS::StackName}`,
//! `!Ref` and `!GetAtt X.Arn` between queues (dead-letter queues are created first). Anything else
//! is reported as unsupported rather than guessed.

use std::collections::BTreeMap;
use std::path::Path;

use aws_sdk_dynamodb::types::{
    AttributeDefinition, BillingMode, GlobalSecondaryIndex, KeySchemaElement, KeyType, Projection, ProjectionType,
    ScalarAttributeType, TimeToLiveSpecification,
};
use aws_sdk_sqs::types::QueueAttributeName;
use serde_yaml::Value;
use shared::adapters::sdk::describe;

#[derive(Debug, thiserror::Error)]
pub enum StackError {
    #[error("cannot read {path}: {source}")]
    Read { path: String, source: std::io::Error },
    #[error("{path} is not valid YAML: {source}")]
    Yaml { path: String, source: serde_yaml::Error },
    #[error("template: {0}")]
    Template(String),
    #[error("creating {resource}: {message}")]
    Create { resource: String, message: String },
}

/// A resource of the template.
#[derive(Debug, Clone)]
pub struct Resource {
    pub logical_id: String,
    pub kind: String,
    pub properties: Value,
    /// The template condition the resource exists under, if any.
    pub condition: Option<String>,
}

/// The parsed template (only what the provisioner and tests need).
#[derive(Debug, Clone)]
pub struct Template {
    pub resources: Vec<Resource>,
    /// Each parameter's `Default`, by name.
    pub defaults: BTreeMap<String, Value>,
}

impl Template {
    pub fn load(path: &Path) -> Result<Self, StackError> {
        let text = std::fs::read_to_string(path)
            .map_err(|source| StackError::Read { path: path.display().to_string(), source })?;
        Self::parse(&text).map_err(|e| match e {
            StackError::Yaml { source, .. } => StackError::Yaml { path: path.display().to_string(), source },
            other => other,
        })
    }

    pub fn parse(text: &str) -> Result<Self, StackError> {
        let doc: Value =
            serde_yaml::from_str(text).map_err(|source| StackError::Yaml { path: "template".into(), source })?;
        let Some(Value::Mapping(resources)) = doc.get("Resources") else {
            return Err(StackError::Template("no Resources section".into()));
        };
        let resources = resources
            .iter()
            .map(|(k, v)| {
                let logical_id = k.as_str().unwrap_or_default().to_string();
                let kind = v.get("Type").and_then(Value::as_str).unwrap_or_default().to_string();
                let properties = v.get("Properties").cloned().unwrap_or(Value::Null);
                let condition = v.get("Condition").and_then(Value::as_str).map(str::to_string);
                Resource { logical_id, kind, properties, condition }
            })
            .collect();
        let defaults = match doc.get("Parameters") {
            Some(Value::Mapping(p)) => {
                p.iter().filter_map(|(k, v)| Some((k.as_str()?.to_string(), v.get("Default")?.clone()))).collect()
            }
            _ => BTreeMap::new(),
        };
        Ok(Self { resources, defaults })
    }

    /// A number, or a `!Ref` to a parameter whose default is one.
    pub fn number(&self, v: &Value) -> Option<i64> {
        v.as_i64().or_else(|| self.defaults.get(ref_target(v)?)?.as_i64())
    }

    pub fn of_kind<'a>(&'a self, kind: &'a str) -> impl Iterator<Item = &'a Resource> + 'a {
        self.resources.iter().filter(move |r| r.kind == kind)
    }

    pub fn resource(&self, logical_id: &str) -> Option<&Resource> {
        self.resources.iter().find(|r| r.logical_id == logical_id)
    }
}

/// Names and URLs of a provisioned stack, by logical id.
#[derive(Debug, Clone, Default)]
pub struct Stack {
    pub name: String,
    pub tables: BTreeMap<String, String>,
    pub queue_urls: BTreeMap<String, String>,
}

impl Stack {
    /// The environment variables a function of the template gets that point at this stack's
    /// resources (`!Ref Table` = its name, `!Ref Queue` = its URL). Secrets and other values that
    /// are not references to tables or queues are left out.
    pub fn function_env(&self, template: &Template, function: &str) -> Result<BTreeMap<String, String>, StackError> {
        let f = template.resource(function).ok_or_else(|| StackError::Template(format!("no resource {function}")))?;
        let mut env = BTreeMap::new();
        if let Some(Value::Mapping(vars)) = f.properties.get("Environment").and_then(|e| e.get("Variables")) {
            for (k, v) in vars {
                let (Some(name), Some(target)) = (k.as_str(), ref_target(v)) else {
                    continue;
                };
                if target == "AWS::StackName" {
                    env.insert(name.to_string(), self.name.clone());
                }
                if let Some(value) = self.tables.get(target).or_else(|| self.queue_urls.get(target)) {
                    env.insert(name.to_string(), value.clone());
                }
            }
        }
        Ok(env)
    }
}

fn tag_name(v: &Value) -> Option<(String, &Value)> {
    match v {
        Value::Tagged(t) => Some((t.tag.to_string().trim_start_matches('!').to_string(), &t.value)),
        Value::Mapping(m) if m.len() == 1 => {
            let (k, inner) = m.iter().next()?;
            let k = k.as_str()?;
            if k == "Ref" {
                Some(("Ref".into(), inner))
            } else {
                k.strip_prefix("Fn::").map(|n| (n.to_string(), inner))
            }
        }
        _ => None,
    }
}

fn ref_target(v: &Value) -> Option<&str> {
    match tag_name(v)? {
        (t, inner) if t == "Ref" => inner.as_str(),
        _ => None,
    }
}

/// Resolves a plain string or a `!Sub` that uses only `${AWS::StackName}`.
fn resolve_str(v: &Value, stack: &str, what: &str) -> Result<String, StackError> {
    // Tags first: serde_yaml's `as_str` looks through them.
    if let (Value::String(s), false) = (v, matches!(v, Value::Tagged(_))) {
        return Ok(s.to_string());
    }
    match tag_name(v) {
        Some((t, Value::String(s))) if t == "Sub" => {
            let out = s.replace("${AWS::StackName}", stack);
            if out.contains("${") {
                Err(StackError::Template(format!("{what}: only ${{AWS::StackName}} is supported in {s:?}")))
            } else {
                Ok(out)
            }
        }
        _ => Err(StackError::Template(format!("{what}: unsupported value {v:?}"))),
    }
}

fn str_prop<'a>(props: &'a Value, key: &str) -> Option<&'a Value> {
    props.get(key).filter(|v| !v.is_null())
}

fn scalar_string(v: &Value) -> Option<String> {
    match v {
        Value::Bool(b) => Some(b.to_string()),
        Value::Number(n) => Some(n.to_string()),
        Value::String(s) => Some(s.clone()),
        _ => None,
    }
}

fn key_schema(v: Option<&Value>) -> Result<Vec<KeySchemaElement>, StackError> {
    v.and_then(Value::as_sequence)
        .ok_or_else(|| StackError::Template("KeySchema missing".into()))?
        .iter()
        .map(|k| {
            let name = k.get("AttributeName").and_then(Value::as_str).unwrap_or_default();
            let kind = match k.get("KeyType").and_then(Value::as_str) {
                Some("RANGE") => KeyType::Range,
                _ => KeyType::Hash,
            };
            KeySchemaElement::builder()
                .attribute_name(name)
                .key_type(kind)
                .build()
                .map_err(|e| StackError::Template(e.to_string()))
        })
        .collect()
}

/// The URL of an existing queue of a provisioned stack.
pub async fn queue_url(
    template: &Template,
    stack: &str,
    logical_id: &str,
    sqs: &aws_sdk_sqs::Client,
) -> Result<String, StackError> {
    let q = template.resource(logical_id).ok_or_else(|| StackError::Template(format!("no resource {logical_id}")))?;
    let name_value = str_prop(&q.properties, "QueueName")
        .ok_or_else(|| StackError::Template(format!("{logical_id}: QueueName missing")))?;
    let name = resolve_str(name_value, stack, logical_id)?;
    let out = sqs.get_queue_url().queue_name(&name).send().await.map_err(|e| StackError::Create {
        resource: format!("queue {name}"),
        message: format!("not found ({}); run `oa local provision` first", describe(&e)),
    })?;
    out.queue_url.ok_or_else(|| StackError::Template(format!("no URL for queue {name}")))
}

/// Creates every table and queue of `template` under the stack name `stack` (idempotent).
pub async fn provision(
    template: &Template,
    stack: &str,
    dynamodb: &aws_sdk_dynamodb::Client,
    sqs: &aws_sdk_sqs::Client,
) -> Result<Stack, StackError> {
    let mut out = Stack { name: stack.to_string(), ..Stack::default() };
    for table in template.of_kind("AWS::DynamoDB::Table") {
        let name = create_table(table, stack, dynamodb).await?;
        out.tables.insert(table.logical_id.clone(), name);
    }
    // Queues that others point at (dead-letter queues) first.
    let mut queues: Vec<&Resource> = template.of_kind("AWS::SQS::Queue").collect();
    queues.sort_by_key(|q| str_prop(&q.properties, "RedrivePolicy").is_some());
    let mut arns = BTreeMap::new();
    for queue in queues {
        let (url, arn) = create_queue(queue, stack, sqs, &arns).await?;
        arns.insert(queue.logical_id.clone(), arn);
        out.queue_urls.insert(queue.logical_id.clone(), url);
    }
    Ok(out)
}

async fn create_table(table: &Resource, stack: &str, client: &aws_sdk_dynamodb::Client) -> Result<String, StackError> {
    let p = &table.properties;
    let what = &table.logical_id;
    let name = resolve_str(
        str_prop(p, "TableName").ok_or_else(|| StackError::Template(format!("{what}: TableName missing")))?,
        stack,
        what,
    )?;
    let err = |message: String| StackError::Create { resource: format!("table {name}"), message };
    let attributes = p
        .get("AttributeDefinitions")
        .and_then(Value::as_sequence)
        .ok_or_else(|| StackError::Template(format!("{what}: AttributeDefinitions missing")))?
        .iter()
        .map(|a| {
            let kind = match a.get("AttributeType").and_then(Value::as_str) {
                Some("N") => ScalarAttributeType::N,
                Some("B") => ScalarAttributeType::B,
                _ => ScalarAttributeType::S,
            };
            AttributeDefinition::builder()
                .attribute_name(a.get("AttributeName").and_then(Value::as_str).unwrap_or_default())
                .attribute_type(kind)
                .build()
                .map_err(|e| StackError::Template(e.to_string()))
        })
        .collect::<Result<Vec<_>, _>>()?;
    let mut request = client
        .create_table()
        .table_name(&name)
        .billing_mode(BillingMode::PayPerRequest)
        .set_attribute_definitions(Some(attributes))
        .set_key_schema(Some(key_schema(p.get("KeySchema"))?));
    for gsi in p.get("GlobalSecondaryIndexes").and_then(Value::as_sequence).into_iter().flatten() {
        let projection = gsi.get("Projection");
        let kind = match projection.and_then(|p| p.get("ProjectionType")).and_then(Value::as_str) {
            Some("KEYS_ONLY") => ProjectionType::KeysOnly,
            Some("INCLUDE") => ProjectionType::Include,
            _ => ProjectionType::All,
        };
        let non_key: Option<Vec<String>> = projection
            .and_then(|p| p.get("NonKeyAttributes"))
            .and_then(Value::as_sequence)
            .map(|s| s.iter().filter_map(|v| v.as_str().map(str::to_string)).collect());
        request = request.global_secondary_indexes(
            GlobalSecondaryIndex::builder()
                .index_name(gsi.get("IndexName").and_then(Value::as_str).unwrap_or_default())
                .set_key_schema(Some(key_schema(gsi.get("KeySchema"))?))
                .projection(Projection::builder().projection_type(kind).set_non_key_attributes(non_key).build())
                .build()
                .map_err(|e| StackError::Template(e.to_string()))?,
        );
    }
    match request.send().await {
        Ok(_) => {}
        Err(e) if e.as_service_error().is_some_and(|s| s.is_resource_in_use_exception()) => {}
        Err(e) => return Err(err(describe(&e))),
    }
    if let Some(ttl) = p.get("TimeToLiveSpecification") {
        if ttl.get("Enabled").and_then(Value::as_bool) == Some(true) {
            let attribute = ttl.get("AttributeName").and_then(Value::as_str).unwrap_or_default();
            let spec = TimeToLiveSpecification::builder()
                .attribute_name(attribute)
                .enabled(true)
                .build()
                .map_err(|e| StackError::Template(e.to_string()))?;
            let result = client.update_time_to_live().table_name(&name).time_to_live_specification(spec).send().await;
            // Already enabled on a re-run: fine.
            if let Err(e) = result {
                let text = describe(&e);
                if !text.contains("already enabled") {
                    return Err(err(text));
                }
            }
        }
    }
    Ok(name)
}

async fn create_queue(
    queue: &Resource,
    stack: &str,
    client: &aws_sdk_sqs::Client,
    arns: &BTreeMap<String, String>,
) -> Result<(String, String), StackError> {
    let p = &queue.properties;
    let what = &queue.logical_id;
    let name = resolve_str(
        str_prop(p, "QueueName").ok_or_else(|| StackError::Template(format!("{what}: QueueName missing")))?,
        stack,
        what,
    )?;
    let err = |message: String| StackError::Create { resource: format!("queue {name}"), message };
    let mut request = client.create_queue().queue_name(&name);
    for (prop, attribute) in [
        ("FifoQueue", QueueAttributeName::FifoQueue),
        ("ContentBasedDeduplication", QueueAttributeName::ContentBasedDeduplication),
        ("VisibilityTimeout", QueueAttributeName::VisibilityTimeout),
        ("MessageRetentionPeriod", QueueAttributeName::MessageRetentionPeriod),
        ("DelaySeconds", QueueAttributeName::DelaySeconds),
        ("ReceiveMessageWaitTimeSeconds", QueueAttributeName::ReceiveMessageWaitTimeSeconds),
        ("DeduplicationScope", QueueAttributeName::DeduplicationScope),
        ("FifoThroughputLimit", QueueAttributeName::FifoThroughputLimit),
    ] {
        if let Some(v) = str_prop(p, prop).and_then(scalar_string) {
            request = request.attributes(attribute, v);
        }
    }
    if let Some(redrive) = str_prop(p, "RedrivePolicy") {
        let target = redrive
            .get("deadLetterTargetArn")
            .and_then(|v| match tag_name(v) {
                Some((t, Value::String(s))) if t == "GetAtt" => s.strip_suffix(".Arn").map(str::to_string),
                Some((t, Value::Sequence(parts))) if t == "GetAtt" => {
                    parts.first().and_then(Value::as_str).map(str::to_string)
                }
                _ => None,
            })
            .ok_or_else(|| StackError::Template(format!("{what}: deadLetterTargetArn must be !GetAtt <Queue>.Arn")))?;
        let arn = arns.get(&target).ok_or_else(|| {
            StackError::Template(format!("{what}: dead-letter queue {target} is not a queue of the template"))
        })?;
        let max = redrive.get("maxReceiveCount").and_then(scalar_string).unwrap_or_else(|| "5".into());
        let policy =
            serde_json::json!({ "deadLetterTargetArn": arn, "maxReceiveCount": max.parse::<u32>().unwrap_or(5) });
        request = request.attributes(QueueAttributeName::RedrivePolicy, policy.to_string());
    }
    let url = request
        .send()
        .await
        .map_err(|e| err(describe(&e)))?
        .queue_url
        .ok_or_else(|| err("no queue URL returned".into()))?;
    let arn = client
        .get_queue_attributes()
        .queue_url(&url)
        .attribute_names(QueueAttributeName::QueueArn)
        .send()
        .await
        .map_err(|e| err(describe(&e)))?
        .attributes
        .and_then(|mut a| a.remove(&QueueAttributeName::QueueArn))
        .ok_or_else(|| err("no queue ARN returned".into()))?;
    Ok((url, arn))
}

#[cfg(test)]
mod tests {
    use super::*;

    const TEMPLATE: &str = include_str!("../../../infra/template.yaml");

    #[test]
    fn the_template_parses_and_every_name_resolves() {
        let t = Template::parse(TEMPLATE).unwrap();
        let tables: Vec<_> = t.of_kind("AWS::DynamoDB::Table").collect();
        let queues: Vec<_> = t.of_kind("AWS::SQS::Queue").collect();
        assert!(tables.len() >= 2 && queues.len() >= 4);
        for r in tables {
            resolve_str(r.properties.get("TableName").unwrap(), "s", &r.logical_id).unwrap();
        }
        for r in queues {
            let name = resolve_str(r.properties.get("QueueName").unwrap(), "s", &r.logical_id).unwrap();
            let fifo = r.properties.get("FifoQueue").and_then(serde_yaml::Value::as_bool).unwrap_or(false);
            assert_eq!(name.ends_with(".fifo"), fifo, "{name}: a FIFO queue's name ends in .fifo, only then");
            assert!(name.starts_with("s-"));
        }
    }

    #[test]
    fn function_env_resolves_refs_only() {
        let t = Template::parse(TEMPLATE).unwrap();
        let mut stack = Stack { name: "s".into(), ..Stack::default() };
        stack.tables.insert("EventsTable".into(), "s-events".into());
        stack.queue_urls.insert("ReplyQueue".into(), "http://q/1/s-reply.fifo".into());
        let env = stack.function_env(&t, "WebhookFunction").unwrap();
        assert_eq!(env.get("EVENTS_TABLE").map(String::as_str), Some("s-events"));
        assert_eq!(env.get("REPLY_QUEUE_URL").map(String::as_str), Some("http://q/1/s-reply.fifo"));
        assert!(!env.contains_key("LINE_CHANNEL_SECRET"));
    }

    #[test]
    fn unsupported_substitutions_are_reported() {
        let v: Value = serde_yaml::from_str("!Sub \"${AWS::Region}-x\"").unwrap();
        let e = resolve_str(&v, "s", "T").unwrap_err().to_string();
        assert!(e.contains("only ${AWS::StackName}"), "{e}");
    }
}
