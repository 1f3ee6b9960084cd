//! `oa rules`: validate a rules file, show what applying it changes, publish it as a new version,
//! and explain which rule answers a message.

use std::fmt::Write;
use std::path::Path;

use shared::adapters::dynamodb::rules::{sha256_hex, Publish, RulesStore};
use shared::rules::file::{RulesError, RulesFile, SourceKind};
use shared::rules::{Answer, Decision, RuleBook, Trigger, Verdict};

/// Reads and validates a rules file; errors read `FILE:LINE:COLUMN: message`.
pub fn load(path: &Path) -> Result<(String, RuleBook), String> {
    let text = std::fs::read_to_string(path).map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    let book = RuleBook::parse(&text).map_err(|e| located(path, &e))?;
    Ok((text, book))
}

pub fn located(path: &Path, e: &RulesError) -> String {
    match e.location {
        Some((line, column)) => format!("{}:{line}:{column}: {}", path.display(), e.message),
        None => format!("{}: {}", path.display(), e.message),
    }
}

/// The changes from `live` to `new`, one line each: `+` added, `-` removed, `~` changed.
pub fn diff(live: Option<&RulesFile>, new: &RulesFile) -> Vec<String> {
    let empty = RulesFile::parse("{}").expect("an empty file is valid");
    let mut out = vec![];
    match live {
        None if new.timezone != empty.timezone => out.push(format!("+ timezone {}", new.timezone.name())),
        Some(l) if l.timezone != new.timezone => {
            out.push(format!("~ timezone {} -> {}", l.timezone.name(), new.timezone.name()))
        }
        _ => {}
    }
    let live = live.unwrap_or(&empty);
    for (section, old, new) in [("reply", &live.replies, &new.replies), ("postback", &live.postbacks, &new.postbacks)] {
        for rule in new {
            match old.iter().find(|r| r.id == rule.id) {
                None => out.push(format!("+ {section} {}", rule.id)),
                Some(before) if before != rule => {
                    let mut fields = vec![];
                    if before.priority != rule.priority {
                        fields.push("priority");
                    }
                    if before.matches != rule.matches {
                        fields.push("match");
                    }
                    if before.when != rule.when {
                        fields.push("when");
                    }
                    if before.sources != rule.sources {
                        fields.push("sources");
                    }
                    if before.messages != rule.messages {
                        fields.push("messages");
                    }
                    out.push(format!("~ {section} {} ({})", rule.id, fields.join(", ")));
                }
                Some(_) => {}
            }
        }
        for rule in old.iter().filter(|r| !new.iter().any(|n| n.id == r.id)) {
            out.push(format!("- {section} {}", rule.id));
        }
    }
    let optional = |name: &str, a: bool, b: bool, same: bool, out: &mut Vec<String>| match (a, b) {
        (false, true) => out.push(format!("+ {name}")),
        (true, false) => out.push(format!("- {name}")),
        (true, true) if !same => out.push(format!("~ {name}")),
        _ => {}
    };
    optional("follow greeting", live.follow.is_some(), new.follow.is_some(), live.follow == new.follow, &mut out);
    optional("fallback", live.fallback.is_some(), new.fallback.is_some(), live.fallback == new.fallback, &mut out);
    let (old, new) = (&live.tags, &new.tags);
    for (section, old, new) in
        [("tag keyword", &old.keywords, &new.keywords), ("tag postback", &old.postbacks, &new.postbacks)]
    {
        for rule in new {
            match old.iter().find(|r| r.id == rule.id) {
                None => out.push(format!("+ {section} {}", rule.id)),
                Some(before) if before != rule => out.push(format!("~ {section} {}", rule.id)),
                Some(_) => {}
            }
        }
        for rule in old.iter().filter(|r| !new.iter().any(|n| n.id == r.id)) {
            out.push(format!("- {section} {}", rule.id));
        }
    }
    if old.follow != new.follow {
        out.push("~ follow tags".into());
    }
    for kind in old.shop.keys().chain(new.shop.keys()).collect::<std::collections::BTreeSet<_>>() {
        match (old.shop.get(kind), new.shop.get(kind)) {
            (None, Some(_)) => out.push(format!("+ shop tags {kind}")),
            (Some(_), None) => out.push(format!("- shop tags {kind}")),
            (Some(a), Some(b)) if a != b => out.push(format!("~ shop tags {kind}")),
            _ => {}
        }
    }
    out
}

/// What `oa rules apply` did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Applied {
    /// The file is what is live already: nothing written.
    Unchanged {
        version: u64,
    },
    Published {
        version: u64,
        changes: Vec<String>,
    },
    /// `--dry-run`: what would change.
    WouldChange {
        changes: Vec<String>,
    },
}

/// Validates `path`, compares it with the live rules and publishes it as the next version.
pub async fn apply(store: &RulesStore, path: &Path, dry_run: bool, now_ms: i64) -> Result<Applied, String> {
    let (text, book) = load(path)?;
    let live = store.live().await.map_err(|e| e.to_string())?;
    let live_file = match &live {
        Some(p) => Some(
            RulesFile::parse(&p.source).map_err(|e| format!("the live rules (v{}) do not parse: {e}", p.version))?,
        ),
        None => None,
    };
    if let Some(p) = &live {
        if p.sha256 == sha256_hex(&text) {
            return Ok(Applied::Unchanged { version: p.version });
        }
    }
    let changes = diff(live_file.as_ref(), &book.file);
    if dry_run {
        return Ok(Applied::WouldChange { changes });
    }
    match store.publish(&text, live.as_ref().map(|p| p.version), now_ms).await.map_err(|e| e.to_string())? {
        Publish::Published { version } => Ok(Applied::Published { version, changes }),
        Publish::Conflict => Err("someone applied other rules meanwhile; run `oa rules apply` again".into()),
    }
}

/// A table of the rules: one line each.
pub fn list(book: &RuleBook) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "{:<24} {:<9} {:>8}  {:<36} {:>8}", "RULE", "ON", "PRIORITY", "MATCH", "MESSAGES");
    for (section, rules) in [("text", &book.file.replies), ("postback", &book.file.postbacks)] {
        for r in rules {
            let m = &r.matches;
            let mut parts = vec![];
            for (kind, list) in
                [("exact", &m.exact), ("prefix", &m.prefix), ("contains", &m.contains), ("regex", &m.regex)]
            {
                if !list.is_empty() {
                    parts.push(format!("{kind}: {}", list.join(" | ")));
                }
            }
            let mut matched = parts.join("; ");
            if matched.chars().count() > 36 {
                matched = matched.chars().take(35).collect::<String>() + "…";
            }
            let _ = writeln!(
                out,
                "{:<24} {:<9} {:>8}  {:<36} {:>8}",
                r.id,
                section,
                r.priority,
                matched,
                r.messages.0.len()
            );
        }
    }
    if let Some(g) = &book.file.follow {
        let unblocked = if g.unblocked.is_some() { ", unblocked: own greeting" } else { "" };
        let _ = writeln!(
            out,
            "{:<24} {:<9} {:>8}  {:<36} {:>8}",
            "(greeting)",
            "follow",
            "-",
            format!("new friends{unblocked}"),
            g.new_friend.0.len()
        );
    }
    if let Some(f) = &book.file.fallback {
        let cooldown = shared::names::format_span(f.cooldown);
        let _ = writeln!(
            out,
            "{:<24} {:<9} {:>8}  {:<36} {:>8}",
            "(fallback)",
            "text",
            "-",
            format!("no rule matched; cooldown {cooldown}"),
            f.messages.0.len()
        );
    }
    out
}

/// Why a message gets the answer it gets, for people.
pub fn explain(book: &RuleBook, trigger: Trigger<'_>, source: SourceKind, at: jiff::Timestamp) -> String {
    let d: Decision = book.decide(trigger, source, at);
    let mut out = String::new();
    if let Some(n) = &d.normalized {
        let _ = writeln!(out, "normalised: {n:?}");
    }
    if d.candidates.is_empty() && matches!(trigger, Trigger::Text(_) | Trigger::Postback(_)) {
        let _ = writeln!(out, "no rule matches");
    }
    for c in &d.candidates {
        let verdict = match c.verdict {
            Verdict::Answers => "ANSWERS",
            Verdict::Outranked => "outranked",
            Verdict::Inactive => "inactive now (outside its windows)",
            Verdict::SourceNotAllowed => "not allowed in this chat",
        };
        let _ =
            writeln!(out, "  {:<24} priority {:>3}  {:?} {:?}  -> {verdict}", c.rule, c.priority, c.kind, c.keyword);
    }
    let messages = |m: &[serde_json::Value]| m.iter().map(|v| v.to_string()).collect::<Vec<_>>().join("\n    ");
    match &d.answer {
        Answer::Rule { rule, messages: m } => {
            let _ = writeln!(out, "reply (rule {rule}):\n    {}", messages(m));
        }
        Answer::Greeting { unblocked, messages: m } => {
            let which = if *unblocked { "unblocked" } else { "newFriend" };
            let _ = writeln!(out, "reply (follow greeting, {which}):\n    {}", messages(m));
        }
        Answer::Fallback { cooldown_secs, messages: m } => {
            let _ =
                writeln!(out, "reply (fallback, at most once per {}s per friend):\n    {}", cooldown_secs, messages(m));
        }
        Answer::Nothing => {
            let _ = writeln!(out, "no reply");
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn file(yaml: &str) -> RulesFile {
        RulesFile::parse(yaml).unwrap()
    }

    #[test]
    fn the_diff_names_added_removed_and_changed_rules() {
        let before = file("replies:\n  - { id: a, match: { exact: a }, messages: [x] }\n  - { id: b, match: { exact: b }, messages: [x] }\n");
        let after = file("replies:\n  - { id: a, match: { exact: a }, messages: [y] }\n  - { id: c, match: { exact: c }, messages: [x] }\nfallback: { cooldown: 1h, messages: [z] }\n");
        assert_eq!(diff(Some(&before), &after), ["~ reply a (messages)", "+ reply c", "- reply b", "+ fallback"]);
        assert_eq!(diff(None, &before), ["+ reply a", "+ reply b"]);
        assert!(diff(Some(&after), &after).is_empty());
    }

    #[test]
    fn the_bakery_example_is_valid_and_answers_its_keywords() {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples/bakery-rules.yaml");
        let (_, book) = load(&path).unwrap();
        // Tuesday 2026-11-24, 12:00 in Taipei: open.
        let noon: jiff::Timestamp = "2026-11-24T04:00:00Z".parse().unwrap();
        let text = explain(&book, Trigger::Text("ＭＥＮＵ"), SourceKind::User, noon);
        assert!(text.contains("reply (rule menu)"), "{text}");
        // Monday: closed, whatever is asked.
        let monday: jiff::Timestamp = "2026-11-23T04:00:00Z".parse().unwrap();
        let text = explain(&book, Trigger::Text("menu"), SourceKind::User, monday);
        assert!(text.contains("reply (rule after-hours)"), "{text}");
        let text = explain(&book, Trigger::Postback("action=order-cake"), SourceKind::User, noon);
        assert!(text.contains("reply (rule order-cake-date)"), "{text}");
    }
}
