//! Reply rules: the file format ([`file`]), active windows ([`window`]), the compiled matcher
//! ([`matcher`]), and, here, the decision a reply is made from (the versioned DynamoDB store is
//! [`crate::adapters::dynamodb::rules`]).
//!
//! Which rule answers: among the rules that match and are active for this chat and time, the
//! highest `priority`; on a tie, the most specific match (exact, then prefix, then contains, then
//! regex); then the rule written first in the file.

pub mod file;
pub mod matcher;
pub mod pattern;
pub mod tags;
pub mod text;
pub mod window;

use jiff::Timestamp;
use serde::Serialize;
use serde_json::Value;

use file::{Rule, RulesError, RulesFile, SourceKind};
use matcher::{Kind, Matcher};
use tags::TagBook;
use text::normalize;

/// What a friend did that a rule may answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Trigger<'a> {
    Text(&'a str),
    Postback(&'a str),
    Follow { unblocked: bool },
}

/// Why a matching rule did or did not answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub enum Verdict {
    Answers,
    /// Another rule ranks higher.
    Outranked,
    /// Outside all of the rule's active windows.
    Inactive,
    /// The chat is a group or room and the rule does not allow it.
    SourceNotAllowed,
}

/// One matching rule and what became of it.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Candidate {
    pub rule: String,
    pub priority: i32,
    pub kind: Kind,
    pub keyword: String,
    pub verdict: Verdict,
}

/// Which reply to send, if any.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "type", rename_all = "camelCase")]
pub enum Answer {
    Rule {
        rule: String,
        messages: Vec<Value>,
    },
    Greeting {
        unblocked: bool,
        messages: Vec<Value>,
    },
    /// No rule matched; the fallback applies if the friend's cooldown allows.
    Fallback {
        cooldown_secs: u64,
        messages: Vec<Value>,
    },
    Nothing,
}

/// The decision and how it was reached (what `oa rules test` prints).
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Decision {
    pub normalized: Option<String>,
    pub candidates: Vec<Candidate>,
    pub answer: Answer,
}

/// A validated rules file, compiled for matching.
pub struct RuleBook {
    pub file: RulesFile,
    replies: Matcher,
    postbacks: Matcher,
    tags: TagBook,
}

impl RuleBook {
    pub fn parse(text: &str) -> Result<Self, RulesError> {
        Self::compile(RulesFile::parse(text)?)
    }

    pub fn compile(file: RulesFile) -> Result<Self, RulesError> {
        let err = |message| RulesError { location: None, message };
        Ok(RuleBook {
            replies: Matcher::from_matches(file.replies.iter().map(|r| &r.matches), true).map_err(err)?,
            postbacks: Matcher::from_matches(file.postbacks.iter().map(|r| &r.matches), false).map_err(err)?,
            tags: TagBook::compile(file.tags.clone()).map_err(err)?,
            file,
        })
    }

    /// Decides the reply to `trigger` in a chat of kind `source` at time `at`.
    pub fn decide(&self, trigger: Trigger<'_>, source: SourceKind, at: Timestamp) -> Decision {
        let (rules, matcher, text) = match trigger {
            Trigger::Text(t) => (&self.file.replies, &self.replies, t),
            Trigger::Postback(d) => (&self.file.postbacks, &self.postbacks, d),
            Trigger::Follow { unblocked } => {
                let answer = match &self.file.follow {
                    // Greetings go to 1:1 chats only: groups get `join`, not `follow`.
                    Some(g) if source == SourceKind::User => {
                        let m = if unblocked { g.unblocked.as_ref().unwrap_or(&g.new_friend) } else { &g.new_friend };
                        Answer::Greeting { unblocked, messages: m.0.clone() }
                    }
                    _ => Answer::Nothing,
                };
                return Decision { normalized: None, candidates: vec![], answer };
            }
        };
        let mut candidates: Vec<(Candidate, usize)> = matcher
            .hits(text)
            .into_iter()
            .filter_map(|h| {
                let rule = rules.get(h.rule)?;
                let verdict = if !rule.sources.contains(&source) {
                    Verdict::SourceNotAllowed
                } else if !window::active(&rule.when, at, &self.file.timezone) {
                    Verdict::Inactive
                } else {
                    Verdict::Outranked
                };
                let c = Candidate {
                    rule: rule.id.0.clone(),
                    priority: rule.priority,
                    kind: h.kind,
                    keyword: rules.get(h.rule).map_or("", |r| h.keyword(&r.matches)).to_string(),
                    verdict,
                };
                Some((c, h.rule))
            })
            .collect();
        candidates.sort_by(|(a, ai), (b, bi)| {
            let usable = |c: &Candidate| c.verdict == Verdict::Outranked;
            usable(b).cmp(&usable(a)).then(b.priority.cmp(&a.priority)).then(a.kind.cmp(&b.kind)).then(ai.cmp(bi))
        });
        let mut answer = Answer::Nothing;
        if let Some((first, index)) = candidates.first_mut().filter(|(c, _)| c.verdict == Verdict::Outranked) {
            first.verdict = Verdict::Answers;
            let messages = rules.get(*index).map(|r| r.messages.0.clone()).unwrap_or_default();
            answer = Answer::Rule { rule: first.rule.clone(), messages };
        } else if let (Trigger::Text(_), Some(f)) = (trigger, &self.file.fallback) {
            if f.sources.contains(&source) {
                answer = Answer::Fallback { cooldown_secs: f.cooldown.as_secs(), messages: f.messages.0.clone() };
            }
        }
        let normalized = matches!(trigger, Trigger::Text(_)).then(|| normalize(text));
        Decision { normalized, candidates: candidates.into_iter().map(|(c, _)| c).collect(), answer }
    }

    /// The tag rules.
    pub fn tags(&self) -> &TagBook {
        &self.tags
    }

    /// The rule list for `oa rules list`: replies then postbacks.
    pub fn rules(&self) -> impl Iterator<Item = &Rule> {
        self.file.all_rules()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use matcher::NaiveMatcher;

    const BOOK: &str = r#"
timezone: Asia/Taipei
replies:
  - id: vip
    match: { exact: vip }
    messages: ["vip answer"]
  - id: vip-anything
    match: { contains: vip }
    messages: ["contains vip"]
  - id: price
    priority: 10
    match: { prefix: price, regex: "how much" }
    messages: ["price list"]
  - id: late-night
    priority: 20
    match: { contains: cake }
    when: [{ hours: "22:00-06:00" }]
    messages: ["we are closed"]
  - id: cake
    match: { contains: cake }
    sources: [user, group]
    messages: ["cakes!"]
postbacks:
  - id: menu
    match: { exact: "action=Menu" }
    messages: ["menu"]
follow:
  newFriend: ["welcome"]
  unblocked: ["welcome back"]
fallback:
  cooldown: 1h
  messages: ["sorry?"]
"#;

    fn book() -> RuleBook {
        RuleBook::parse(BOOK).unwrap()
    }

    // Monday 2026-11-23 12:00 and 23:00 in Taipei.
    fn noon() -> Timestamp {
        "2026-11-23T04:00:00Z".parse().unwrap()
    }
    fn night() -> Timestamp {
        "2026-11-23T15:00:00Z".parse().unwrap()
    }

    fn rule_of(d: &Decision) -> Option<&str> {
        match &d.answer {
            Answer::Rule { rule, .. } => Some(rule),
            _ => None,
        }
    }

    #[test]
    fn full_width_and_case_variants_match_the_same_keyword() {
        assert_eq!(normalize("  ＶＩＰ "), "vip");
        for text in ["vip", "VIP", "ＶＩＰ", " Vip\n"] {
            let d = book().decide(Trigger::Text(text), SourceKind::User, noon());
            assert_eq!(rule_of(&d), Some("vip"), "{text:?}");
        }
    }

    #[test]
    fn exact_beats_contains_at_equal_priority_and_priority_beats_both() {
        let d = book().decide(Trigger::Text("vip"), SourceKind::User, noon());
        assert_eq!(
            d.candidates.iter().map(|c| (c.rule.as_str(), c.verdict)).collect::<Vec<_>>(),
            [("vip", Verdict::Answers), ("vip-anything", Verdict::Outranked)]
        );
        let d = book().decide(Trigger::Text("price for vip"), SourceKind::User, noon());
        assert_eq!(rule_of(&d), Some("price"));
        let d = book().decide(Trigger::Text("HOW MUCH is it"), SourceKind::User, noon());
        assert_eq!(rule_of(&d), Some("price"), "regexes see the normalised text");
    }

    #[test]
    fn windows_and_sources_decide_between_rules() {
        let b = book();
        assert_eq!(rule_of(&b.decide(Trigger::Text("cake?"), SourceKind::User, noon())), Some("cake"));
        assert_eq!(rule_of(&b.decide(Trigger::Text("cake?"), SourceKind::User, night())), Some("late-night"));
        let group = b.decide(Trigger::Text("cake?"), SourceKind::Group, night());
        assert_eq!(rule_of(&group), Some("cake"), "late-night is 1:1 only");
        assert_eq!(group.candidates[1].verdict, Verdict::SourceNotAllowed);
        let group_vip = b.decide(Trigger::Text("vip"), SourceKind::Group, noon());
        assert_eq!(group_vip.answer, Answer::Nothing, "no group rule and the fallback is 1:1 only");
    }

    #[test]
    fn postbacks_follow_and_fallback() {
        let b = book();
        assert_eq!(rule_of(&b.decide(Trigger::Postback("action=Menu"), SourceKind::User, noon())), Some("menu"));
        assert_eq!(b.decide(Trigger::Postback("action=menu"), SourceKind::User, noon()).answer, Answer::Nothing);
        let back = b.decide(Trigger::Follow { unblocked: true }, SourceKind::User, noon());
        assert_eq!(
            back.answer,
            Answer::Greeting {
                unblocked: true,
                messages: vec![serde_json::json!({"type": "text", "text": "welcome back"})]
            }
        );
        let other = b.decide(Trigger::Text("hello"), SourceKind::User, noon());
        assert!(matches!(other.answer, Answer::Fallback { cooldown_secs: 3600, .. }));
    }

    #[test]
    fn the_compiled_matcher_agrees_with_the_naive_loop() {
        // Many overlapping keywords of every kind, checked over many texts.
        let words = ["cake", "cheese", "cheesecake", "choc", "late", "chocolate", "tea", "milk tea", "vip", "ｖｉｐ"];
        let mut yaml = String::from("replies:\n");
        for (i, w) in words.iter().enumerate() {
            let kind = ["exact", "prefix", "contains"][i % 3];
            yaml +=
                &format!("  - id: r{i}\n    match: {{ {kind}: \"{w}\", regex: \"^{w}[0-9]+$\" }}\n    messages: [x]\n");
        }
        let file = RulesFile::parse(&yaml).unwrap();
        let matches = || file.replies.iter().map(|r| &r.matches);
        let (fast, slow) = (Matcher::from_matches(matches(), true).unwrap(), NaiveMatcher::new(matches()));
        let mut texts = vec![];
        for a in words {
            texts.push(a.to_string());
            texts.push(format!("{a}42"));
            for b in words {
                texts.push(format!("{a} {b}"));
                texts.push(format!("{a}{b}"));
            }
        }
        for t in texts {
            let key = |h: Vec<matcher::Hit>| h.into_iter().map(|h| (h.rule, h.kind)).collect::<Vec<_>>();
            assert_eq!(key(fast.hits(&t)), key(slow.hits(&t)), "{t:?}");
        }
    }
}
