//! Matching a message against every rule at once: exact keywords in a hash map, prefix and
//! contains keywords in one Aho-Corasick automaton, regexes in one `RegexSet`. The time per message
//! depends on the message, not on the number of rules.

use std::collections::HashMap;

use aho_corasick::{AhoCorasick, MatchKind};
use regex::{RegexSet, RegexSetBuilder};
use serde::Serialize;

use super::pattern::Match;
use super::text::normalize;

/// How a keyword matched. The order is the tie-break between rules of equal priority: an exact
/// match beats a prefix, which beats a substring, which beats a regex.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Kind {
    Exact,
    Prefix,
    Contains,
    Regex,
}

/// One rule that matched: its index in the rule list, how, and which keyword (index into the
/// list of that kind in the rule).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Hit {
    pub rule: usize,
    pub kind: Kind,
    pub keyword: usize,
}

impl Hit {
    /// The keyword or pattern as written in the rules file, in the rule's `m`.
    pub fn keyword<'m>(&self, m: &'m Match) -> &'m str {
        let list = match self.kind {
            Kind::Exact => &m.exact,
            Kind::Prefix => &m.prefix,
            Kind::Contains => &m.contains,
            Kind::Regex => &m.regex,
        };
        list.get(self.keyword).map_or("", String::as_str)
    }
}

/// The compiled form of a list of rules.
pub struct Matcher {
    normalise: bool,
    exact: HashMap<String, Vec<(usize, usize)>>,
    literals: Option<AhoCorasick>,
    literal_owner: Vec<Hit>,
    regexes: RegexSet,
    regex_owner: Vec<(usize, usize)>,
}

impl Matcher {
    /// Compiles a list of matches (reply rules', tag rules'); hits name their index in the list.
    /// With `normalise`, keywords and messages are compared after NFKC, case folding and trimming
    /// (text messages); without, byte for byte (postback data).
    pub fn from_matches<'m>(matches: impl Iterator<Item = &'m Match>, normalise: bool) -> Result<Self, String> {
        let norm = |s: &str| if normalise { normalize(s) } else { s.to_string() };
        let mut exact: HashMap<String, Vec<(usize, usize)>> = HashMap::new();
        let (mut literals, mut literal_owner, mut patterns, mut regex_owner) = (vec![], vec![], vec![], vec![]);
        for (r, m) in matches.enumerate() {
            for (k, kw) in m.exact.iter().enumerate() {
                exact.entry(norm(kw)).or_default().push((r, k));
            }
            for (kind, list) in [(Kind::Prefix, &m.prefix), (Kind::Contains, &m.contains)] {
                for (k, kw) in list.iter().enumerate() {
                    literals.push(norm(kw));
                    literal_owner.push(Hit { rule: r, kind, keyword: k });
                }
            }
            for (k, p) in m.regex.iter().enumerate() {
                patterns.push(p.clone());
                regex_owner.push((r, k));
            }
        }
        let literals = if literals.is_empty() {
            None
        } else {
            // Standard semantics: overlapping search reports every keyword that occurs.
            Some(
                AhoCorasick::builder()
                    .match_kind(MatchKind::Standard)
                    .build(&literals)
                    .map_err(|e| format!("keyword automaton: {e}"))?,
            )
        };
        let regexes = RegexSetBuilder::new(&patterns)
            .case_insensitive(normalise)
            .size_limit(64 << 20)
            .build()
            .map_err(|e| format!("regex set: {e}"))?;
        Ok(Matcher { normalise, exact, literals, literal_owner, regexes, regex_owner })
    }

    /// Every rule that matches `text`, once each, with its most specific way of matching.
    pub fn hits(&self, text: &str) -> Vec<Hit> {
        let owned;
        let text = if self.normalise {
            owned = normalize(text);
            owned.as_str()
        } else {
            text
        };
        let mut best: HashMap<usize, Hit> = HashMap::new();
        let mut offer = |h: Hit| {
            best.entry(h.rule)
                .and_modify(|b| {
                    if h.kind < b.kind {
                        *b = h
                    }
                })
                .or_insert(h);
        };
        if let Some(owners) = self.exact.get(text) {
            for &(rule, keyword) in owners {
                offer(Hit { rule, kind: Kind::Exact, keyword });
            }
        }
        if let Some(ac) = &self.literals {
            for m in ac.find_overlapping_iter(text) {
                let Some(&owner) = self.literal_owner.get(m.pattern().as_usize()) else { continue };
                if owner.kind == Kind::Contains || m.start() == 0 {
                    offer(owner);
                }
            }
        }
        if !self.regex_owner.is_empty() {
            for i in self.regexes.matches(text).iter() {
                let Some(&(rule, keyword)) = self.regex_owner.get(i) else { continue };
                offer(Hit { rule, kind: Kind::Regex, keyword });
            }
        }
        let mut hits: Vec<Hit> = best.into_values().collect();
        hits.sort_by_key(|h| h.rule);
        hits
    }
}

/// The obvious implementation: every keyword of every rule, one after the other. Kept as the
/// reference the compiled matcher is tested against, and as the baseline of the benchmark.
pub struct NaiveMatcher {
    rules: Vec<NaiveRule>,
}

/// One rule's normalised exact, prefix and contains keywords, and its regexes.
type NaiveRule = (Vec<String>, Vec<String>, Vec<String>, Vec<regex::Regex>);

impl NaiveMatcher {
    pub fn new<'m>(matches: impl Iterator<Item = &'m Match>) -> Self {
        let norm = |v: &Vec<String>| v.iter().map(|k| normalize(k)).collect::<Vec<_>>();
        let rules = matches
            .map(|m| {
                let regexes = m
                    .regex
                    .iter()
                    .filter_map(|p| regex::RegexBuilder::new(p).case_insensitive(true).build().ok())
                    .collect();
                (norm(&m.exact), norm(&m.prefix), norm(&m.contains), regexes)
            })
            .collect();
        NaiveMatcher { rules }
    }

    pub fn hits(&self, text: &str) -> Vec<Hit> {
        let text = normalize(text);
        let mut hits = vec![];
        for (rule, (exact, prefix, contains, regexes)) in self.rules.iter().enumerate() {
            let found = exact
                .iter()
                .position(|k| *k == text)
                .map(|keyword| Hit { rule, kind: Kind::Exact, keyword })
                .or_else(|| {
                    prefix.iter().position(|k| text.starts_with(k.as_str())).map(|keyword| Hit {
                        rule,
                        kind: Kind::Prefix,
                        keyword,
                    })
                })
                .or_else(|| {
                    contains.iter().position(|k| text.contains(k.as_str())).map(|keyword| Hit {
                        rule,
                        kind: Kind::Contains,
                        keyword,
                    })
                })
                .or_else(|| {
                    regexes.iter().position(|r| r.is_match(&text)).map(|keyword| Hit {
                        rule,
                        kind: Kind::Regex,
                        keyword,
                    })
                });
            hits.extend(found);
        }
        hits
    }
}
