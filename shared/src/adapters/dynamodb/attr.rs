//! Reading and writing DynamoDB attribute values.

use std::collections::HashMap;

use aws_sdk_dynamodb::types::AttributeValue;

pub type Item = HashMap<String, AttributeValue>;

pub fn s(v: &str) -> AttributeValue {
    AttributeValue::S(v.to_string())
}

pub fn n(v: impl std::fmt::Display) -> AttributeValue {
    AttributeValue::N(v.to_string())
}

pub fn text<'i>(item: &'i Item, key: &str) -> Option<&'i str> {
    item.get(key).and_then(|v| v.as_s().ok()).map(String::as_str)
}

pub fn int(item: &Item, key: &str) -> Option<i64> {
    item.get(key).and_then(|v| v.as_n().ok()).and_then(|v| v.parse().ok())
}

pub fn uint(item: &Item, key: &str) -> u64 {
    int(item, key).map_or(0, |v| v.max(0) as u64)
}

pub fn flag(item: &Item, key: &str) -> bool {
    item.get(key).and_then(|v| v.as_bool().ok()).copied().unwrap_or(false)
}

/// A string set (absent: empty).
pub fn string_set(item: &Item, key: &str) -> Vec<String> {
    item.get(key).and_then(|v| v.as_ss().ok()).cloned().unwrap_or_default()
}
