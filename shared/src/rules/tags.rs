//! The `tags:` section of the rules file: which tags a friend gets from what they say, the
//! questionnaires they answer, following, and what they do in the shop.
//!
//! ```yaml
//! tags:
//!   keywords:                       # text messages, matched like reply rules (normalised)
//!     - id: likes-dessert
//!       match: { contains: [cake, pudding] }
//!       add: [dessert]
//!   postbacks:                      # postback.data, byte for byte
//!     - id: q-dessert-yes
//!       match: { exact: "q=dessert&a=yes" }
//!       add: [dessert]
//!   follow:                         # lifecycle tags (these two are the defaults)
//!     newFriend: { add: [friend:new], remove: [friend:returning] }
//!     returning: { add: [friend:returning], remove: [friend:new] }
//!   shop:                           # by shop event type (these two are the defaults)
//!     add_to_cart: { add: [cart:open], expires: 7d }
//!     purchase: { remove: [cart:open], add: [buyer, "bought:{category}"] }
//! ```
//!
//! Every matching keyword and postback rule applies (unlike replies, where one rule wins). Within
//! one event, removals happen before additions. `{name}` in a shop tag is the event's property
//! `name`, lower-cased, one tag per element when it is a list (the first
//! [`MAX_VALUES_PER_PLACEHOLDER`] elements: a shop event cannot fan out into hundreds of tags);
//! no tag when it is missing.

use std::collections::BTreeMap;
use std::time::Duration;

use serde::de::{self, Deserializer};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use unicode_normalization::UnicodeNormalization;

use super::matcher::Matcher;
use super::pattern::{Match, RuleId};
use crate::names::is_tag;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct TagsSection {
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub keywords: Vec<TagRule>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub postbacks: Vec<TagRule>,
    #[serde(default)]
    pub follow: FollowTags,
    /// Shop event type → what it does; `{}` turns the defaults off.
    #[serde(default = "default_shop")]
    pub shop: BTreeMap<String, TagAction>,
}

impl Default for TagsSection {
    fn default() -> Self {
        TagsSection { keywords: vec![], postbacks: vec![], follow: FollowTags::default(), shop: default_shop() }
    }
}

/// A keyword or postback rule that tags.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TagRule {
    pub id: RuleId,
    #[serde(rename = "match")]
    pub matches: Match,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub add: Vec<TagTemplate>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub remove: Vec<TagTemplate>,
    /// How long added tags last; for ever when absent.
    #[serde(default, skip_serializing_if = "Option::is_none", with = "opt_span")]
    pub expires: Option<Duration>,
}

impl TagRule {
    fn action(&self) -> TagAction {
        TagAction { add: self.add.clone(), remove: self.remove.clone(), expires: self.expires }
    }
}

/// Tags to add (lasting `expires`, or for ever) and tags to remove.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TagAction {
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub add: Vec<TagTemplate>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub remove: Vec<TagTemplate>,
    #[serde(default, skip_serializing_if = "Option::is_none", with = "opt_span")]
    pub expires: Option<Duration>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct FollowTags {
    #[serde(default)]
    pub new_friend: TagAction,
    #[serde(default)]
    pub returning: TagAction,
}

impl Default for FollowTags {
    fn default() -> Self {
        FollowTags {
            new_friend: TagAction { add: tags(&["friend:new"]), remove: tags(&["friend:returning"]), expires: None },
            returning: TagAction { add: tags(&["friend:returning"]), remove: tags(&["friend:new"]), expires: None },
        }
    }
}

fn tags(names: &[&str]) -> Vec<TagTemplate> {
    names.iter().map(|n| TagTemplate(n.to_string())).collect()
}

fn default_shop() -> BTreeMap<String, TagAction> {
    BTreeMap::from([
        (
            "add_to_cart".to_string(),
            TagAction { add: tags(&["cart:open"]), remove: vec![], expires: Some(Duration::from_secs(7 * 86_400)) },
        ),
        (
            "purchase".to_string(),
            TagAction { add: tags(&["buyer", "bought:{category}"]), remove: tags(&["cart:open"]), expires: None },
        ),
    ])
}

/// An optional expiry: a span longer than zero.
mod opt_span {
    use super::*;
    pub use crate::names::span_opt::serialize;

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Duration>, D::Error> {
        match crate::names::span_opt::deserialize(d)? {
            Some(span) if span.is_zero() => Err(de::Error::custom("expires must be longer than 0s")),
            span => Ok(span),
        }
    }
}

/// The most list elements one `{property}` placeholder turns into tags; later ones are ignored.
pub const MAX_VALUES_PER_PLACEHOLDER: usize = 20;

/// A tag name, possibly with `{property}` placeholders filled from a shop event.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(transparent)]
pub struct TagTemplate(pub String);

impl<'de> Deserialize<'de> for TagTemplate {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        let parts = split(&s).map_err(de::Error::custom)?;
        // Placeholders stand for any tag-safe text; what is around them must make a tag.
        let sample: String = parts.iter().map(|p| if p.1 { "x" } else { p.0 }).collect();
        if !is_tag(&sample) {
            return Err(de::Error::custom(format!(
                "{s:?} is not a tag: lower case letters, digits, _ and (not first) : . - ; {{property}} for a shop value"
            )));
        }
        Ok(TagTemplate(s))
    }
}

/// Literal text and `{placeholder}` names, in order (`true` marks a placeholder).
fn split(s: &str) -> Result<Vec<(&str, bool)>, String> {
    let mut parts = vec![];
    let mut rest = s;
    while let Some(open) = rest.find('{') {
        let close = rest[open..].find('}').ok_or_else(|| format!("{s:?}: '{{' without '}}'"))? + open;
        let name = &rest[open + 1..close];
        if name.is_empty() || !name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
            return Err(format!("{s:?}: {{{name}}} is not a property name"));
        }
        if open > 0 {
            parts.push((&rest[..open], false));
        }
        parts.push((name, true));
        rest = &rest[close + 1..];
    }
    if rest.contains('}') {
        return Err(format!("{s:?}: '}}' without '{{'"));
    }
    if !rest.is_empty() {
        parts.push((rest, false));
    }
    Ok(parts)
}

/// A shop value as tag text: NFKC, lower case, runs of anything else than letters, digits and
/// `_ : . -` turned into one `_` ("Sweets & Cakes" → `sweets_cakes`).
pub fn tag_value(v: &str) -> String {
    let mut out = String::new();
    for c in v.nfkc().flat_map(char::to_lowercase) {
        if c.is_alphanumeric() || matches!(c, '_' | ':' | '.' | '-') {
            out.push(c);
        } else if !out.ends_with('_') {
            out.push('_');
        }
    }
    out.trim_matches('_').to_string()
}

impl TagTemplate {
    /// The tags this template names for an event with `properties`.
    pub fn render(&self, properties: &Map<String, Value>) -> Vec<String> {
        // Validated when read; a template that somehow is not renders nothing.
        let Ok(parts) = split(&self.0) else { return vec![] };
        let mut out = vec![String::new()];
        for (text, placeholder) in parts {
            if !placeholder {
                out.iter_mut().for_each(|o| o.push_str(text));
                continue;
            }
            let values: Vec<String> = match properties.get(text) {
                Some(Value::Array(items)) => items.iter().filter_map(scalar).take(MAX_VALUES_PER_PLACEHOLDER).collect(),
                Some(v) => scalar(v).into_iter().collect(),
                None => vec![],
            };
            let values: Vec<String> = values.iter().map(|v| tag_value(v)).filter(|v| !v.is_empty()).collect();
            out = out.iter().flat_map(|o| values.iter().map(move |v| format!("{o}{v}"))).collect();
        }
        out.retain(|t| is_tag(t));
        out
    }
}

fn scalar(v: &Value) -> Option<String> {
    match v {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        Value::Bool(b) => Some(b.to_string()),
        _ => None,
    }
}

/// What happened, as far as tagging is concerned.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum TagTrigger<'a> {
    Text(&'a str),
    Postback(&'a str),
    Follow { unblocked: bool },
    Shop { kind: &'a str, properties: &'a Map<String, Value> },
}

/// One change to one tag, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TagOp {
    pub tag: String,
    pub change: Change,
    /// What caused it, kept on the tag: `keyword:<rule>`, `postback:<rule>`, `follow:newFriend`,
    /// `follow:returning`, `shop:<type>`.
    pub source: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Change {
    Add { expires_after: Option<Duration> },
    Remove,
}

/// The tag rules, compiled.
pub struct TagBook {
    section: TagsSection,
    keywords: Matcher,
    postbacks: Matcher,
}

impl TagBook {
    pub fn compile(section: TagsSection) -> Result<Self, String> {
        Ok(TagBook {
            keywords: Matcher::from_matches(section.keywords.iter().map(|r| &r.matches), true)?,
            postbacks: Matcher::from_matches(section.postbacks.iter().map(|r| &r.matches), false)?,
            section,
        })
    }

    pub fn section(&self) -> &TagsSection {
        &self.section
    }

    /// The tag changes `trigger` asks for: removals first, then additions; one op per tag.
    pub fn ops(&self, trigger: TagTrigger<'_>) -> Vec<TagOp> {
        let empty = Map::new();
        let mut actions: Vec<(TagAction, String, &Map<String, Value>)> = vec![];
        match trigger {
            TagTrigger::Text(text) => {
                for h in self.keywords.hits(text) {
                    let Some(rule) = self.section.keywords.get(h.rule) else { continue };
                    actions.push((rule.action(), format!("keyword:{}", rule.id), &empty));
                }
            }
            TagTrigger::Postback(data) => {
                for h in self.postbacks.hits(data) {
                    let Some(rule) = self.section.postbacks.get(h.rule) else { continue };
                    actions.push((rule.action(), format!("postback:{}", rule.id), &empty));
                }
            }
            TagTrigger::Follow { unblocked: false } => {
                actions.push((self.section.follow.new_friend.clone(), "follow:newFriend".into(), &empty))
            }
            TagTrigger::Follow { unblocked: true } => {
                actions.push((self.section.follow.returning.clone(), "follow:returning".into(), &empty))
            }
            TagTrigger::Shop { kind, properties } => {
                if let Some(a) = self.section.shop.get(kind) {
                    actions.push((a.clone(), format!("shop:{kind}"), properties));
                }
            }
        }
        let mut removes: BTreeMap<String, TagOp> = BTreeMap::new();
        let mut adds: BTreeMap<String, TagOp> = BTreeMap::new();
        for (action, source, props) in &actions {
            for tag in action.remove.iter().flat_map(|t| t.render(props)) {
                removes.insert(tag.clone(), TagOp { tag, change: Change::Remove, source: source.clone() });
            }
            for tag in action.add.iter().flat_map(|t| t.render(props)) {
                let change = Change::Add { expires_after: action.expires };
                adds.insert(tag.clone(), TagOp { tag, change, source: source.clone() });
            }
        }
        // A tag both removed and added by one event ends up added.
        removes.retain(|tag, _| !adds.contains_key(tag));
        removes.into_values().chain(adds.into_values()).collect()
    }
}

#[cfg(test)]
mod tests;
