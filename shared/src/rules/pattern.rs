//! What a rule matches and how rules are named, as written in a rules file: keywords (checked
//! non-empty once normalised) and regexes (checked to compile).

use std::fmt;

use serde::de::{self, Deserializer};
use serde::{Deserialize, Serialize};

use super::text::normalize;

/// What a rule matches. Several kinds may be given; any one matching is enough.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Match {
    #[serde(default, skip_serializing_if = "Vec::is_empty", deserialize_with = "keywords")]
    pub exact: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty", deserialize_with = "keywords")]
    pub prefix: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty", deserialize_with = "keywords")]
    pub contains: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty", deserialize_with = "patterns")]
    pub regex: Vec<String>,
}

impl Match {
    pub fn is_empty(&self) -> bool {
        self.exact.is_empty() && self.prefix.is_empty() && self.contains.is_empty() && self.regex.is_empty()
    }
}

/// A rule id: letters, digits, `-`, `_`, `.`, `:`; at most 64 characters.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(transparent)]
pub struct RuleId(pub String);

impl<'de> Deserialize<'de> for RuleId {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        let ok = !s.is_empty()
            && s.len() <= 64
            && s.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.' | ':'));
        if ok {
            Ok(RuleId(s))
        } else {
            Err(de::Error::custom(format!(
                "rule id {s:?} must be 1-64 characters of letters, digits, '-', '_', '.', ':'"
            )))
        }
    }
}

impl fmt::Display for RuleId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

#[derive(Deserialize)]
#[serde(untagged)]
enum OneOrMany {
    One(String),
    Many(Vec<String>),
}

fn one_or_many<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<String>, D::Error> {
    Ok(match OneOrMany::deserialize(d).map_err(|_| de::Error::custom("expected a string or a list of strings"))? {
        OneOrMany::One(s) => vec![s],
        OneOrMany::Many(v) => v,
    })
}

fn keywords<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<String>, D::Error> {
    let list = one_or_many(d)?;
    if let Some(bad) = list.iter().find(|k| normalize(k).is_empty()) {
        return Err(de::Error::custom(format!("keyword {bad:?} is empty once normalised")));
    }
    Ok(list)
}

fn patterns<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<String>, D::Error> {
    let list = one_or_many(d)?;
    for p in &list {
        if let Err(e) = regex::RegexBuilder::new(p).size_limit(1 << 20).build() {
            return Err(de::Error::custom(format!("invalid regex {p:?}: {e}")));
        }
    }
    Ok(list)
}
