//! The rules file: YAML written by people, validated while it is read so that every error carries
//! the line and column it came from. The format is documented in `examples/README.md`.

use std::collections::BTreeSet;
use std::fmt;
use std::time::Duration;

use serde::de::{self, Deserializer};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::pattern::{Match, RuleId};
use super::tags::TagsSection;
use super::window::{Window, Zone};
use crate::names::span;

/// Most messages one reply may carry (LINE's limit).
pub const MAX_MESSAGES: usize = 5;
/// Longest text message LINE accepts, in characters.
pub const MAX_TEXT_CHARS: usize = 5_000;

/// A whole rules file.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct RulesFile {
    /// Time zone of active windows that name none (IANA name or fixed offset); UTC when absent.
    #[serde(default)]
    pub timezone: Zone,
    /// Keyword replies to text messages.
    #[serde(default)]
    pub replies: Vec<Rule>,
    /// Replies to postback actions, matched on `postback.data` as sent (no normalisation).
    #[serde(default)]
    pub postbacks: Vec<Rule>,
    /// Greeting on follow.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub follow: Option<Greeting>,
    /// Reply to a text message no rule matched, at most once per cooldown per friend.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fallback: Option<Fallback>,
    /// Tag rules (see [`super::tags`]); shop and follow tags have defaults.
    #[serde(default)]
    pub tags: TagsSection,
}

/// One keyword or postback rule.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Rule {
    pub id: RuleId,
    /// Higher wins when several rules match; 0 when absent.
    #[serde(default)]
    pub priority: i32,
    #[serde(rename = "match")]
    pub matches: Match,
    /// When the rule answers; always when empty.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub when: Vec<Window>,
    /// Chats where the rule answers: `user` (1:1, the default), `group`, `room`.
    #[serde(default = "user_only", skip_serializing_if = "is_user_only")]
    pub sources: BTreeSet<SourceKind>,
    pub messages: Messages,
}

/// The greeting for new friends, and optionally a different one for friends who unblocked.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Greeting {
    pub new_friend: Messages,
    /// Sent when `follow.isUnblocked` is true; `newFriend` when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub unblocked: Option<Messages>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Fallback {
    /// Shortest time between two fallback replies to the same friend, e.g. `30m`, `24h`, `7d`.
    #[serde(with = "span")]
    pub cooldown: Duration,
    #[serde(default = "user_only", skip_serializing_if = "is_user_only")]
    pub sources: BTreeSet<SourceKind>,
    pub messages: Messages,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SourceKind {
    User,
    Group,
    Room,
}

fn user_only() -> BTreeSet<SourceKind> {
    BTreeSet::from([SourceKind::User])
}

fn is_user_only(s: &BTreeSet<SourceKind>) -> bool {
    *s == user_only()
}

/// 1-5 LINE message objects. In the file a plain string is a text message; an object with a
/// `type` is passed to LINE as written (sticker, image, flex, quick replies, ...).
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(transparent)]
pub struct Messages(pub Vec<Value>);

impl<'de> Deserialize<'de> for Messages {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        // Checked element by element, so an error points at the message at fault.
        struct Visitor;
        impl<'de> de::Visitor<'de> for Visitor {
            type Value = Messages;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                write!(f, "a list of 1-{MAX_MESSAGES} messages")
            }
            fn visit_seq<A: de::SeqAccess<'de>>(self, mut seq: A) -> Result<Messages, A::Error> {
                let mut out = Vec::new();
                while let Some(v) = seq.next_element::<Value>()? {
                    if out.len() == MAX_MESSAGES {
                        return Err(de::Error::custom(format!("a reply has 1-{MAX_MESSAGES} messages, not more")));
                    }
                    out.push(message(v).map_err(de::Error::custom)?);
                }
                if out.is_empty() {
                    return Err(de::Error::custom(format!("a reply has 1-{MAX_MESSAGES} messages, this one has none")));
                }
                Ok(Messages(out))
            }
        }
        d.deserialize_seq(Visitor)
    }
}

fn message(v: Value) -> Result<Value, String> {
    let v = match v {
        Value::String(text) => serde_json::json!({ "type": "text", "text": text }),
        Value::Object(_) => v,
        other => return Err(format!("a message is a text string or a LINE message object, not {other}")),
    };
    let field = |name: &str| v.get(name).and_then(Value::as_str).filter(|s| !s.is_empty());
    match field("type") {
        None => return Err("a message object needs a \"type\" (text, sticker, image, flex, ...)".into()),
        Some("text") => {
            let text = field("text").ok_or("a text message needs a non-empty \"text\"")?;
            let n = text.chars().count();
            if n > MAX_TEXT_CHARS {
                return Err(format!("text messages are at most {MAX_TEXT_CHARS} characters, this one has {n}"));
            }
        }
        Some("sticker") => {
            if field("packageId").is_none() || field("stickerId").is_none() {
                return Err("a sticker message needs \"packageId\" and \"stickerId\" (as strings)".into());
            }
        }
        Some("image") => {
            for key in ["originalContentUrl", "previewImageUrl"] {
                if !field(key).is_some_and(|u| u.starts_with("https://")) {
                    return Err(format!("an image message needs an https:// \"{key}\""));
                }
            }
        }
        Some(_) => {} // flex, template, imagemap, ...: LINE validates them
    }
    Ok(v)
}

/// A rules file that could not be used, with where in the file.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{}{message}", location.map(|(l, c)| format!("line {l}, column {c}: ")).unwrap_or_default())]
pub struct RulesError {
    /// 1-based line and column, when known.
    pub location: Option<(usize, usize)>,
    pub message: String,
}

impl RulesFile {
    /// Parses and validates a rules file.
    pub fn parse(text: &str) -> Result<Self, RulesError> {
        let file: RulesFile = serde_yaml::from_str(text).map_err(|e| RulesError {
            location: e.location().map(|l| (l.line(), l.column())),
            message: e.to_string().split(" at line ").next().unwrap_or_default().to_string(),
        })?;
        file.check(text)?;
        Ok(file)
    }

    /// Checks that span rules: unique ids and at least one match kind per rule.
    fn check(&self, text: &str) -> Result<(), RulesError> {
        let mut seen = BTreeSet::new();
        for rule in self.replies.iter().chain(&self.postbacks) {
            if !seen.insert(&rule.id) {
                return Err(RulesError {
                    location: id_location(text, &rule.id, 2),
                    message: format!("rule id {:?} is used twice", rule.id.0),
                });
            }
            if rule.matches.is_empty() {
                return Err(RulesError {
                    location: id_location(text, &rule.id, 1),
                    message: format!("rule {:?} has an empty match: give exact, prefix, contains or regex", rule.id.0),
                });
            }
        }
        let mut seen = BTreeSet::new();
        for rule in self.tags.keywords.iter().chain(&self.tags.postbacks) {
            let id = &rule.id.0;
            let problem = if !seen.insert(&rule.id) {
                Some((2, format!("tag rule id {id:?} is used twice")))
            } else if rule.matches.is_empty() {
                Some((1, format!("tag rule {id:?} has an empty match: give exact, prefix, contains or regex")))
            } else if rule.add.is_empty() && rule.remove.is_empty() {
                Some((1, format!("tag rule {id:?} neither adds nor removes a tag")))
            } else {
                None
            };
            if let Some((nth, message)) = problem {
                // Reply and tag rules may share an id, so count from the tags section on.
                return Err(RulesError { location: tags_id_location(text, &rule.id, nth), message });
            }
        }
        Ok(())
    }

    /// Every rule, replies then postbacks, in file order.
    pub fn all_rules(&self) -> impl Iterator<Item = &Rule> {
        self.replies.iter().chain(&self.postbacks)
    }
}

/// [`id_location`] within the `tags:` section.
fn tags_id_location(text: &str, id: &RuleId, nth: usize) -> Option<(usize, usize)> {
    let start = text.lines().position(|l| l.starts_with("tags:"))?;
    let rest: String = text.lines().skip(start).collect::<Vec<_>>().join("\n");
    id_location(&rest, id, nth).map(|(line, col)| (line + start, col))
}

/// Where `id: <id>` appears for the `nth` time (checks that span rules happen after parsing, when
/// serde no longer knows positions).
fn id_location(text: &str, id: &RuleId, nth: usize) -> Option<(usize, usize)> {
    text.lines()
        .enumerate()
        .filter_map(|(i, line)| {
            let col = line.find("id:")?;
            // Block style (`id: x`) or flow style (`{ id: x, ... }`).
            let value = line[col + 3..].split([',', '}', '#']).next().unwrap_or_default();
            let value = value.trim().trim_matches(|c| c == '"' || c == '\'');
            (value == id.0).then_some((i + 1, col + 1))
        })
        .nth(nth - 1)
}

#[cfg(test)]
mod tests {
    use super::*;

    const GOOD: &str = r#"
timezone: Asia/Taipei
replies:
  - id: vip
    priority: 5
    match: { exact: [vip, "會員"] }
    messages:
      - "Welcome, VIP!"
      - { type: sticker, packageId: "446", stickerId: "1988" }
  - id: hours
    match: { contains: hours }
    when: [{ days: [mon, tue], hours: "09:00-18:00" }]
    sources: [user, group]
    messages: ["9 to 6"]
postbacks:
  - id: menu
    match: { prefix: "action=menu" }
    messages: ["Here is the menu"]
follow:
  newFriend: ["Hello!"]
fallback:
  cooldown: 24h
  messages: ["We will get back to you"]
"#;

    fn err(text: &str) -> RulesError {
        RulesFile::parse(text).expect_err("should be rejected")
    }

    #[test]
    fn a_good_file_parses_with_defaults_filled_in() {
        let f = RulesFile::parse(GOOD).unwrap();
        assert_eq!(f.replies.len(), 2);
        assert_eq!(f.replies[0].messages.0[0], serde_json::json!({"type": "text", "text": "Welcome, VIP!"}));
        assert_eq!(f.replies[1].priority, 0);
        assert_eq!(f.replies[0].sources, user_only());
        assert_eq!(f.fallback.unwrap().cooldown, Duration::from_secs(86_400));
        assert_eq!(f.postbacks[0].matches.prefix, vec!["action=menu"]);
    }

    #[test]
    fn errors_point_at_the_offending_line() {
        let bad_regex = "replies:\n  - id: a\n    match: { regex: \"(unclosed\" }\n    messages: [hi]\n";
        let e = err(bad_regex);
        assert_eq!(e.location.map(|l| l.0), Some(3), "{e}");
        assert!(e.message.contains("invalid regex"), "{e}");

        let six = "replies:\n  - id: a\n    match: { exact: a }\n    messages: [a, b, c, d, e, f]\n";
        let e = err(six);
        assert_eq!(e.location.map(|l| l.0), Some(4), "{e}");
        assert!(e.message.contains("1-5 messages"), "{e}");

        let unknown = "replies:\n  - id: a\n    match: { exact: a }\n    mesages: [hi]\n";
        let e = err(unknown);
        assert_eq!(e.location.map(|l| l.0), Some(4), "{e}");
        assert!(e.message.contains("mesages"), "{e}");

        let dup = "replies:\n  - id: a\n    match: { exact: a }\n    messages: [hi]\n  - id: a\n    match: { exact: b }\n    messages: [hi]\n";
        let e = err(dup);
        assert_eq!(e.location, Some((5, 5)), "{e}");
        assert!(e.to_string().starts_with("line 5, column 5: rule id \"a\" is used twice"), "{e}");
    }

    #[test]
    fn messages_are_checked_against_line_limits() {
        let long =
            format!("replies:\n  - id: a\n    match: {{ exact: a }}\n    messages: [\"{}\"]\n", "x".repeat(5001));
        assert!(err(&long).message.contains("at most 5000"));
        let sticker =
            "replies:\n  - id: a\n    match: { exact: a }\n    messages: [{ type: sticker, packageId: \"1\" }]\n";
        assert!(err(sticker).message.contains("stickerId"));
        let image = "replies:\n  - id: a\n    match: { exact: a }\n    messages: [{ type: image, originalContentUrl: \"http://x\", previewImageUrl: \"https://y\" }]\n";
        assert!(err(image).message.contains("originalContentUrl"));
        let empty_match = "replies:\n  - id: a\n    match: {}\n    messages: [hi]\n";
        assert!(err(empty_match).message.contains("empty match"));
        let blank = "replies:\n  - id: a\n    match: { exact: \"  \" }\n    messages: [hi]\n";
        assert!(err(blank).message.contains("empty once normalised"));
        assert!(err("timezone: Mars/Olympus\n").message.contains("Mars/Olympus"));
        assert!(err("fallback: { cooldown: soon, messages: [x] }\n").message.contains("duration"));
    }
}
