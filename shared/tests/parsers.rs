//! Property tests of the parsers of text that comes from outside: shop event bodies, rules files,
//! campaign files, account settings, segment expressions, spans, hours, time zones and active
//! windows. For each: it never panics, on random text and bytes and on valid documents changed in
//! one place (cut short, a line dropped, doubled or replaced, a value replaced by random or huge
//! text or put in a list or map, openers nested thousands deep inserted); it answers within a second; what it
//! refuses comes with an error that says where; and valid documents parse. Segment expressions are
//! also generated from the grammar: they always parse, and print back to the same expression.
//!
//! `cargo test` runs 256 cases a property; `make fuzz` runs the same properties with many more
//! through `PROPTEST_CASES`, which proptest's default configuration reads.
//!
//! Where an error says where, and where the code gives no place (so nothing here asks for one):
//! - Rules, campaign and settings files (`RulesError`): `line L, column C: ...` whenever the YAML
//!   parser or a field's check knows the position. No line or column for: an empty document
//!   ("EOF while parsing a value"), several documents in one file, aliases expanding past
//!   serde_yaml's repetition limit; the checks made after reading (a rule id used twice, an empty
//!   match, a tag rule that neither adds nor removes, a bad segment expression, an empty name, a
//!   zero budget, two caps per period, an unusable plan) when the key is not found as `key:` on a
//!   line of its own (flow style, a quoted key, no `tags:` line); and compiling the matcher
//!   (`RuleBook::compile`: keyword automaton, regex set), which never has one.
//! - Shop events (`ShopEventError`): a body that is not JSON: serde_json's line and column. An
//!   invalid event: its index (`event 3: ...`); the failed checks name the field, but serde's type
//!   errors (a number where `eventId` should be text) do not. Too many events and an empty batch
//!   name no place: they are about the whole body.
//! - Segment expressions (`SegmentError`): always the character position.
//! - Spans, hours and time zones (`String` errors): the refused text, quoted.

use std::fmt::Debug;
use std::time::{Duration, Instant};

use proptest::prelude::*;
use proptest::sample::Index;
use serde_json::Value;

use shared::campaign::file::{AccountSettings, CampaignFile};
use shared::names::{format_span, parse_span, MAX_SPAN};
use shared::rules::file::{RulesError, RulesFile};
use shared::rules::window::{Hours, Window, Zone};
use shared::rules::RuleBook;
use shared::segment::{Expr, FriendFacts, SegmentError, TagFacts, MAX_DEPTH};
use shared::shop::{ShopEvent, ShopEventError, MAX_AGE_MS, MAX_EVENTS_PER_REQUEST, MAX_FUTURE_MS};

/// Longest any one parse may take.
const LIMIT: Duration = Duration::from_secs(1);

/// 2026-11-22T10:00:00Z, when the shop events are received.
const NOW: i64 = 1_795_341_600_000;
const DAY: i64 = 86_400_000;

const SHOP_ONE: &str = r#"{
  "eventId": "o-1",
  "type": "add_to_cart",
  "userId": "U0123456789abcdef0123456789abcdef",
  "occurredAt": "2026-11-22T09:58:00Z",
  "properties": {
    "sku": "cake-1",
    "category": ["Sweets & Cakes", "スイーツ"],
    "price": 450
  }
}"#;

const SHOP_MANY: &str = r#"[
  {
    "eventId": "order-2026-11-22:0001",
    "type": "purchase",
    "userId": "U0123456789abcdef0123456789abcdef",
    "occurredAt": 1795341600000,
    "properties": { "category": "shoes", "total": 3200 }
  },
  {
    "eventId": "v.2",
    "type": "view_product",
    "userId": "Ufedcba9876543210fedcba9876543210",
    "occurredAt": 1795341000000
  }
]"#;

const SHOP_DOCS: &[&str] = &[SHOP_ONE, SHOP_MANY];

const RULES_SMALL: &str = r#"
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

const RULES_TAGS: &str = r#"
tags:
  keywords:
    - id: dessert-talk
      match: { contains: [ケーキ, pudding] }
      add: [dessert]
    - id: vip-ask
      match: { exact: vip }
      add: [asked:vip]
      expires: 2d
  postbacks:
    - id: q-dessert-no
      match: { exact: "q=dessert&a=no" }
      remove: [dessert]
  shop:
    purchase: { remove: ["cart:open"], add: [buyer, "bought:{category}"] }
"#;

const RULES_DOCS: &[&str] = &[include_str!("../../examples/bakery-rules.yaml"), RULES_SMALL, RULES_TAGS];

const CAMPAIGN_FULL: &str = r#"id: xmas-cakes-2026
name: "Christmas cakes: pre-order"
segment: (dessert OR tagged(bought:スイーツ, within 90d)) AND NOT vip AND friend_before(2026-01-01)
messages:
  - "Pre-order your Christmas cake now!"
  - { type: sticker, packageId: "446", stickerId: "1988" }
schedule: 2026-12-01T10:00:00+08:00
holdout: 2.5%
batchSize: 200
aggregationUnit: xmas_cakes_2026
"#;

const CAMPAIGN_DOCS: &[&str] = &[include_str!("../../examples/cart-abandoners.campaign.yaml"), CAMPAIGN_FULL];

const SETTINGS_CUSTOM: &str = r#"timezone: "+09:00"
caps:
  - { per: week, max: 1 }
  - { per: month, max: 3 }
plan:
  fee: 15000.0
  currency: JPY
  included: 30000
  extra: 3.0
  tiers:
    - { above: 50000, price: 2.8 }
    - { above: 100000, price: 2.5 }
suppress:
  - U0123456789abcdef0123456789abcdef
sendRate: 150
quietHours: "21:00-09:00"
minGap: 3d
monthlyBudget: { messages: 100000 }
"#;

const SETTINGS_DOCS: &[&str] = &[include_str!("../../examples/account.yaml"), SETTINGS_CUSTOM];

const EXPRESSIONS: &[&str] = &[
    "dessert AND NOT vip",
    "tagged(cart:open, within 3d) AND NOT buyer",
    "(dessert OR cart:open) AND NOT (vip AND friend_since(30d))",
    "friend_before(2026-01-01) OR bought:スイーツ",
    "all AND NOT friend_before(365d)",
    "TAGGED(bought:shoes, WITHIN 90d) or Friend_Since(12h)",
];

const WINDOW_DOCS: &[&str] = &[
    "{ days: [mon, tue, wed, thu, fri], hours: \"09:00-18:00\", timezone: Asia/Taipei }\n",
    "days: [fri]\nhours: \"22:00-02:00\"\ntimezone: \"+09:00\"\n",
];

/// Errors of the YAML files that may come without a line and column (see the top of the file).
const UNPLACED: &[&str] = &[
    "EOF while parsing",
    "more than one document",
    "repetition limit exceeded",
    "is used twice",
    "empty match",
    "neither adds nor removes",
    "keyword automaton",
    "regex set",
    "bad segment expression",
    "name is empty",
    "budget.messages",
    "two caps per",
    "unknown plan",
    "plan prices",
    "plan tiers",
];

const KEYWORDS: &[&str] = &["all", "and", "or", "not", "tagged", "friend_since", "friend_before"];

// ---------------------------------------------------------------------------------------------
// Inputs

/// Text of up to a few thousand characters of any kind.
fn long_text() -> impl Strategy<Value = String> {
    prop::collection::vec(any::<char>(), 0..4_000).prop_map(|chars| chars.into_iter().collect())
}

/// Every place text can be cut or inserted at: the start of each character, and the end.
fn boundaries(text: &str) -> Vec<usize> {
    text.char_indices().map(|(i, _)| i).chain(std::iter::once(text.len())).collect()
}

fn truncate(text: &str, at: &Index) -> String {
    text[..*at.get(&boundaries(text))].to_string()
}

fn insert(text: &str, at: &Index, inserted: &str) -> String {
    let i = *at.get(&boundaries(text));
    format!("{}{}{}", &text[..i], inserted, &text[i..])
}

/// Replaces one line with what `change` makes of it (no lines, one or more).
fn with_line(text: &str, at: &Index, change: impl FnOnce(&str) -> Vec<String>) -> String {
    let mut lines: Vec<String> = text.split('\n').map(str::to_string).collect();
    let i = at.index(lines.len());
    let new = change(&lines[i]);
    let after = lines.split_off(i + 1);
    lines.pop();
    lines.extend(new);
    lines.extend(after);
    lines.join("\n")
}

/// Replaces the value of one `key: value` line (or JSON's `"key": value,`, keeping the comma) with
/// what `change` makes of it.
fn with_value(text: &str, at: &Index, change: impl FnOnce(&str) -> String) -> String {
    let mut lines: Vec<String> = text.split('\n').map(str::to_string).collect();
    let keyed: Vec<usize> = (0..lines.len()).filter(|&i| lines[i].contains(": ")).collect();
    if keyed.is_empty() {
        return text.to_string();
    }
    let i = *at.get(&keyed);
    let line = &lines[i];
    let split = line.find(": ").map_or(0, |p| p + 2);
    let (key, value) = line.split_at(split);
    let (value, comma) = value.strip_suffix(',').map_or((value, ""), |v| (v, ","));
    let new = format!("{}{}{}", key, change(value), comma);
    lines[i] = new;
    lines.join("\n")
}

/// Replaces one space-separated word with what `change` makes of it.
fn with_word(text: &str, at: &Index, change: impl FnOnce(&str) -> String) -> String {
    let mut words: Vec<String> = text.split(' ').map(str::to_string).collect();
    let i = at.index(words.len());
    let new = change(&words[i]);
    words[i] = new;
    words.join(" ")
}

/// Values no document expects: random text (bare and quoted), numbers too big for any field,
/// YAML's special forms, and openers nested 2,000 deep (YAML parsers give up far sooner).
fn odd_value() -> BoxedStrategy<String> {
    prop_oneof![
        any::<String>(),
        any::<String>().prop_map(|s| format!("{s:?}")),
        long_text(),
        any::<i64>().prop_map(|n| n.to_string()),
        (any::<u64>(), prop::sample::select(vec!["s", "m", "h", "d", "%", ""])).prop_map(|(n, u)| format!("{n}{u}")),
        any::<f64>().prop_map(|x| x.to_string()),
        prop::sample::select(vec![
            "99999999999999999999999999",
            "-99999999999999999999999999",
            "99999999999999999999999999d",
            "1e999",
            ".nan",
            "~",
            "null",
            "[]",
            "{}",
            "\"\"",
            "true",
            "-",
            ":",
            "? x",
            "&a [*a, *a, *a]",
            "*nowhere",
            "!!binary aGk=",
            "!tag x",
            "|",
            "---",
            "...",
        ])
        .prop_map(String::from),
        prop::sample::select(vec!["[", "{", "(", "- ", "NOT ", "{\"a\": ", "[{\"a\": "])
            .prop_map(|open| open.repeat(2_000)),
    ]
    .boxed()
}

/// A valid document (YAML or JSON) changed in one place.
fn mutated(doc: &'static str) -> BoxedStrategy<String> {
    prop_oneof![
        any::<Index>().prop_map(move |at| truncate(doc, &at)),
        any::<Index>().prop_map(move |at| with_line(doc, &at, |_| vec![])),
        any::<Index>().prop_map(move |at| with_line(doc, &at, |l| vec![l.to_string(), l.to_string()])),
        (any::<Index>(), odd_value()).prop_map(move |(at, s)| with_line(doc, &at, move |_| vec![s])),
        (any::<Index>(), odd_value()).prop_map(move |(at, s)| with_value(doc, &at, move |_| s)),
        (any::<Index>(), 0..3usize).prop_map(move |(at, how)| with_value(doc, &at, |v| match how {
            0 => format!("[{v}]"),
            1 => format!("{{\"x\": {v}}}"),
            _ => format!("[[{v}], {{}}]"),
        })),
        (any::<Index>(), odd_value()).prop_map(move |(at, s)| insert(doc, &at, &s)),
        (any::<Index>(), any::<char>()).prop_map(move |(at, c)| insert(doc, &at, &c.to_string())),
    ]
    .boxed()
}

/// A valid segment expression changed in one place.
fn mutated_expression(expr: &'static str) -> BoxedStrategy<String> {
    prop_oneof![
        any::<Index>().prop_map(move |at| truncate(expr, &at)),
        (any::<Index>(), any::<char>()).prop_map(move |(at, c)| insert(expr, &at, &c.to_string())),
        (any::<Index>(), odd_value()).prop_map(move |(at, s)| insert(expr, &at, &s)),
        (any::<Index>(), odd_value()).prop_map(move |(at, s)| with_word(expr, &at, move |_| s)),
        any::<Index>().prop_map(move |at| with_word(expr, &at, |_| String::new())),
        any::<Index>().prop_map(move |at| with_word(expr, &at, |w| format!("{w} {w}"))),
        (any::<Index>(), prop::sample::select(vec!["(", "NOT ", "NOT (", "tagged(", "("]))
            .prop_map(move |(at, open)| insert(expr, &at, &open.repeat(10_000))),
    ]
    .boxed()
}

/// Any JSON value, a few levels deep.
fn json_value() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::from),
        any::<i64>().prop_map(Value::from),
        any::<f64>().prop_map(Value::from),
        any::<String>().prop_map(Value::from),
    ];
    leaf.prop_recursive(4, 32, 4, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..4).prop_map(Value::from),
            prop::collection::vec((any::<String>(), inner), 0..4)
                .prop_map(|fields| Value::Object(fields.into_iter().collect())),
        ]
    })
}

/// A valid shop event with one field (or an unknown one) set to any JSON value.
fn shop_event_with_any_field() -> impl Strategy<Value = Vec<u8>> {
    let fields = vec!["eventId", "type", "userId", "occurredAt", "properties", "extra"];
    (prop::sample::select(fields), json_value()).prop_map(|(field, value)| {
        let mut event: Value = serde_json::from_str(SHOP_ONE).expect("SHOP_ONE is JSON");
        event[field] = value;
        serde_json::to_vec(&event).expect("a Value serialises")
    })
}

/// A keyword in lower, upper or title case: keywords are case-insensitive.
fn kw(word: &'static str) -> impl Strategy<Value = String> {
    let title = word[..1].to_uppercase() + &word[1..];
    prop::sample::select(vec![word.to_string(), word.to_uppercase(), title])
}

/// White space between tokens.
fn sep() -> impl Strategy<Value = &'static str> {
    prop::sample::select(vec![" ", "  ", "\t", "\n", "\u{3000}"])
}

fn tag() -> impl Strategy<Value = String> {
    let ascii = "[a-z_][a-z0-9_:.-]{0,15}".prop_filter("keywords are not tags", |t| !KEYWORDS.contains(&t.as_str()));
    let other = prop::sample::select(vec!["bought:スイーツ", "甜點", "cart:open", "δ-1.2", "_", "within"]);
    prop_oneof![3 => ascii, 1 => other.prop_map(String::from)]
}

fn span() -> impl Strategy<Value = String> {
    (0u64..10_000, prop::sample::select(vec!["s", "m", "h", "d"])).prop_map(|(n, unit)| format!("{n}{unit}"))
}

fn date() -> impl Strategy<Value = String> {
    (1970i32..=2100, 1u8..=12, 1u8..=28).prop_map(|(y, m, d)| format!("{y:04}-{m:02}-{d:02}"))
}

fn atom() -> BoxedStrategy<String> {
    prop_oneof![
        4 => tag(),
        1 => kw("all"),
        2 => (kw("tagged"), tag()).prop_map(|(k, t)| format!("{k}({t})")),
        2 => (kw("tagged"), tag(), kw("within"), span()).prop_map(|(k, t, w, s)| format!("{k} ( {t} ,{w} {s} )")),
        1 => (kw("friend_since"), span()).prop_map(|(k, s)| format!("{k}({s})")),
        1 => (kw("friend_before"), span()).prop_map(|(k, s)| format!("{k}({s})")),
        1 => (kw("friend_before"), date()).prop_map(|(k, d)| format!("{k}( {d} )")),
    ]
    .boxed()
}

/// Valid segment expressions, from the grammar at the top of `shared::segment`; at most 6 levels
/// of parentheses and NOT, far below [`MAX_DEPTH`].
fn expression() -> impl Strategy<Value = String> {
    atom().prop_recursive(6, 48, 4, |inner| {
        prop_oneof![
            (kw("not"), sep(), inner.clone()).prop_map(|(k, s, e)| format!("{k}{s}{e}")),
            (inner.clone(), sep()).prop_map(|(e, s)| format!("({s}{e}{s})")),
            (prop::collection::vec(inner.clone(), 2..4), kw("and"), sep())
                .prop_map(|(parts, k, s)| parts.join(format!("{s}{k}{s}").as_str())),
            (prop::collection::vec(inner, 2..4), kw("or"), sep())
                .prop_map(|(parts, k, s)| parts.join(format!("{s}{k}{s}").as_str())),
        ]
    })
}

// ---------------------------------------------------------------------------------------------
// Checks

/// Runs `parse` on `input`, failing the case if it takes [`LIMIT`] or longer.
fn timed<I: Debug + ?Sized, T>(input: &I, parse: impl FnOnce() -> T) -> Result<T, TestCaseError> {
    let start = Instant::now();
    let out = parse();
    let took = start.elapsed();
    prop_assert!(took < LIMIT, "took {:?} on {:?}", took, input);
    Ok(out)
}

/// Line breaks as YAML counts them (CR LF counts twice here, which only loosens the bound).
fn line_breaks(text: &str) -> usize {
    text.chars().filter(|c| matches!(c, '\n' | '\r' | '\u{85}' | '\u{2028}' | '\u{2029}')).count()
}

/// A refused YAML file: a line and column inside the text, or one of the errors that have none.
fn check_file_error(text: &str, e: &RulesError) -> Result<(), TestCaseError> {
    let shown = e.to_string();
    prop_assert!(!shown.trim().is_empty(), "an empty error for {:?}", text);
    match e.location {
        Some((line, column)) => {
            prop_assert!(line >= 1 && column >= 1, "{}", shown);
            // An error at the end of the input points at the line after the last one.
            prop_assert!(line <= line_breaks(text) + 2, "line {} is past the end of {:?}: {}", line, text, shown);
            prop_assert!(shown.starts_with(&format!("line {line}, column {column}: ")), "{}", shown);
        }
        None => prop_assert!(
            UNPLACED.iter().any(|m| e.message.contains(m)),
            "no line or column in {:?} for {:?}",
            shown,
            text
        ),
    }
    Ok(())
}

fn check_rules(text: &str) -> Result<(), TestCaseError> {
    let file = timed(text, || RulesFile::parse(text))?;
    let book = timed(text, || RuleBook::parse(text))?;
    if let Err(e) = &file {
        check_file_error(text, e)?;
        prop_assert_eq!(book.as_ref().err(), Some(e), "RuleBook::parse reads the file the same way");
    }
    if let Err(e) = &book {
        check_file_error(text, e)?;
    }
    Ok(())
}

fn check_campaign(text: &str) -> Result<(), TestCaseError> {
    match timed(text, || CampaignFile::parse(text))? {
        Ok(c) => prop_assert!(Expr::parse(&c.segment).is_ok(), "accepted a bad segment {:?}", c.segment),
        Err(e) => check_file_error(text, &e)?,
    }
    Ok(())
}

fn check_settings(text: &str) -> Result<(), TestCaseError> {
    match timed(text, || AccountSettings::parse(text))? {
        Ok(s) => prop_assert!(s.plan.resolve().is_ok(), "accepted an unusable plan {:?}", s.plan),
        Err(e) => check_file_error(text, &e)?,
    }
    Ok(())
}

fn check_shop(body: &[u8]) -> Result<(), TestCaseError> {
    let e = match timed(body, || ShopEvent::parse_body(body, NOW))? {
        Ok(events) => {
            prop_assert!((1..=MAX_EVENTS_PER_REQUEST).contains(&events.len()));
            return Ok(());
        }
        Err(e) => e,
    };
    let shown = e.to_string();
    prop_assert!(!shown.is_empty());
    match &e {
        ShopEventError::NotJson(json) => {
            prop_assert!(json.line() >= 1 && shown.contains(" at line "), "{}", shown);
        }
        ShopEventError::Invalid { index, reason } => {
            prop_assert!(*index < MAX_EVENTS_PER_REQUEST, "{}", shown);
            prop_assert!(!reason.is_empty() && shown.starts_with(&format!("event {index}: ")), "{}", shown);
        }
        ShopEventError::TooMany(n) => prop_assert!(*n > MAX_EVENTS_PER_REQUEST, "{}", shown),
        ShopEventError::Empty => {}
    }
    Ok(())
}

fn check_segment_error(text: &str, e: &SegmentError) -> Result<(), TestCaseError> {
    prop_assert!(!e.message.is_empty(), "an empty message for {:?}", text);
    prop_assert!(e.position <= text.chars().count(), "position {} is past the end of {:?}", e.position, text);
    prop_assert!(e.to_string().starts_with(&format!("at position {}: ", e.position)), "{}", e);
    prop_assert!(e.render(text).ends_with(&format!("^ {}", e.message)), "{}", e);
    Ok(())
}

/// Parses `text`; a parsed expression evaluates, and prints to text that parses back to it (unless
/// printing made it deeper than the limit: printing adds the parentheses precedence left out).
fn check_segment(text: &str) -> Result<(), TestCaseError> {
    let e = match timed(text, || Expr::parse(text))? {
        Ok(e) => e,
        Err(err) => return check_segment_error(text, &err),
    };
    let printed = e.to_string();
    match Expr::parse(&printed) {
        Ok(again) => prop_assert_eq!(again, e.clone(), "{:?} printed as {:?}", text, printed),
        Err(err) => {
            prop_assert!(err.message.contains("nested too deep"), "{:?} printed as {:?}: {}", text, printed, err)
        }
    }
    let mut facts = FriendFacts { followed_at_ms: Some(NOW - 40 * DAY), ..FriendFacts::default() };
    e.tags(&mut |t| {
        facts.tags.insert(t.to_string(), TagFacts { tagged_at_ms: NOW - DAY, expires_at_ms: None });
    });
    let _ = e.needs_scan();
    // NOT over the printed form, through the parser: the printing keeps the precedence.
    if let Ok(not) = Expr::parse(&format!("NOT ({printed})")) {
        prop_assert_eq!(not.matches(&facts, NOW), !e.matches(&facts, NOW), "NOT ({}) does not invert", printed);
    }
    Ok(())
}

fn check_span(text: &str) -> Result<(), TestCaseError> {
    match timed(text, || parse_span(text))? {
        Ok(d) => {
            prop_assert!(d <= MAX_SPAN, "{:?} is {:?}", text, d);
            prop_assert_eq!(parse_span(&format_span(d)), Ok(d), "{:?} written back", text);
        }
        Err(message) => {
            prop_assert!(message.contains(&format!("{:?}", text.trim())), "{:?}: {}", text, message);
        }
    }
    Ok(())
}

fn check_hours(text: &str) -> Result<(), TestCaseError> {
    if let Err(message) = timed(text, || Hours::parse(text))? {
        prop_assert!(message.contains(&format!("{text:?}")), "{:?}: {}", text, message);
    }
    Ok(())
}

fn check_zone(text: &str) -> Result<(), TestCaseError> {
    match timed(text, || Zone::parse(text))? {
        Ok(zone) => prop_assert_eq!(zone.name(), text),
        Err(message) => prop_assert!(message.contains(&format!("{text:?}")), "{:?}: {}", text, message),
    }
    Ok(())
}

fn check_window(text: &str) -> Result<(), TestCaseError> {
    // A refusal is serde_yaml's own error: only that it answers, in time, is checked for it.
    if let Ok(w) = timed(text, || serde_yaml::from_str::<Window>(text))? {
        let at: jiff::Timestamp = "2026-11-27T14:00:00Z".parse().expect("a timestamp");
        let _ = w.contains(at, &Zone::default());
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// Valid documents

#[test]
fn the_valid_examples_parse() {
    for doc in SHOP_DOCS {
        let events = ShopEvent::parse_body(doc.as_bytes(), NOW).unwrap_or_else(|e| panic!("{e}\n{doc}"));
        assert!(!events.is_empty());
    }
    for doc in RULES_DOCS {
        RulesFile::parse(doc).unwrap_or_else(|e| panic!("{e}\n{doc}"));
        if let Err(e) = RuleBook::parse(doc) {
            panic!("{e}\n{doc}");
        }
    }
    for doc in CAMPAIGN_DOCS {
        CampaignFile::parse(doc).unwrap_or_else(|e| panic!("{e}\n{doc}"));
    }
    for doc in SETTINGS_DOCS {
        AccountSettings::parse(doc).unwrap_or_else(|e| panic!("{e}\n{doc}"));
    }
    for expr in EXPRESSIONS {
        Expr::parse(expr).unwrap_or_else(|e| panic!("{}", e.render(expr)));
    }
    for doc in WINDOW_DOCS {
        serde_yaml::from_str::<Window>(doc).unwrap_or_else(|e| panic!("{e}\n{doc}"));
    }
}

// ---------------------------------------------------------------------------------------------
// Properties

proptest! {
    // Shop events.

    #[test]
    fn shop_bodies_of_random_bytes(body in prop::collection::vec(any::<u8>(), 0..2_000)) {
        check_shop(&body)?;
    }

    #[test]
    fn shop_bodies_of_random_text(a in ".*", b in any::<String>(), c in long_text()) {
        for text in [a, b, c] {
            check_shop(text.as_bytes())?;
        }
    }

    #[test]
    fn shop_bodies_changed_in_one_place(
        text in prop::sample::select(SHOP_DOCS).prop_flat_map(mutated),
        event in shop_event_with_any_field(),
    ) {
        check_shop(text.as_bytes())?;
        check_shop(&event)?;
    }

    #[test]
    fn shop_batches_of_any_size(n in 0..=MAX_EVENTS_PER_REQUEST + 5) {
        let body = format!("[{}]", vec![SHOP_ONE; n].join(","));
        match ShopEvent::parse_body(body.as_bytes(), NOW) {
            Ok(events) => prop_assert!(events.len() == n && n <= MAX_EVENTS_PER_REQUEST),
            Err(ShopEventError::Empty) => prop_assert_eq!(n, 0),
            Err(ShopEventError::TooMany(k)) => prop_assert!(k == n && n > MAX_EVENTS_PER_REQUEST),
            Err(e) => return Err(TestCaseError::fail(format!("{n} events: {e}"))),
        }
    }

    #[test]
    fn shop_times_inside_the_window_and_only_those(
        at in prop_oneof![any::<i64>(), NOW - 31 * DAY..NOW + 31 * DAY],
    ) {
        let body = SHOP_ONE.replace("\"2026-11-22T09:58:00Z\"", &at.to_string());
        let result = ShopEvent::parse_body(body.as_bytes(), NOW);
        if (NOW - MAX_AGE_MS..=NOW + MAX_FUTURE_MS).contains(&at) {
            prop_assert!(result.is_ok(), "{}: {:?}", at, result);
        } else {
            let shown = result.expect_err("outside the window").to_string();
            prop_assert!(shown.starts_with("event 0: ") && shown.contains("occurredAt"), "{}", shown);
        }
    }

    // Rules files.

    #[test]
    fn rules_files_of_random_text(a in ".*", b in any::<String>(), c in long_text()) {
        for text in [a, b, c] {
            check_rules(&text)?;
        }
    }

    #[test]
    fn rules_files_changed_in_one_place(text in prop::sample::select(RULES_DOCS).prop_flat_map(mutated)) {
        check_rules(&text)?;
    }

    // Campaign files and account settings.

    #[test]
    fn campaign_and_settings_files_of_random_text(a in ".*", b in any::<String>(), c in long_text()) {
        for text in [a, b, c] {
            check_campaign(&text)?;
            check_settings(&text)?;
        }
    }

    #[test]
    fn campaign_files_changed_in_one_place(text in prop::sample::select(CAMPAIGN_DOCS).prop_flat_map(mutated)) {
        check_campaign(&text)?;
    }

    #[test]
    fn campaign_files_with_a_changed_segment(
        segment in prop::sample::select(EXPRESSIONS).prop_flat_map(mutated_expression),
    ) {
        let text = CAMPAIGN_FULL.replace(
            "(dessert OR tagged(bought:スイーツ, within 90d)) AND NOT vip AND friend_before(2026-01-01)",
            &segment,
        );
        check_campaign(&text)?;
    }

    #[test]
    fn settings_files_changed_in_one_place(text in prop::sample::select(SETTINGS_DOCS).prop_flat_map(mutated)) {
        check_settings(&text)?;
    }

    // Segment expressions.

    #[test]
    fn segment_expressions_of_random_text(a in ".*", b in any::<String>(), c in long_text()) {
        for text in [a, b, c] {
            check_segment(&text)?;
        }
    }

    #[test]
    fn segment_expressions_changed_in_one_place(
        text in prop::sample::select(EXPRESSIONS).prop_flat_map(mutated_expression),
    ) {
        check_segment(&text)?;
    }

    #[test]
    fn segment_expressions_from_the_grammar_parse_and_print_back(text in expression()) {
        let e = Expr::parse(&text).map_err(|err| TestCaseError::fail(err.render(&text)))?;
        let printed = e.to_string();
        prop_assert_eq!(Expr::parse(&printed), Ok(e.clone()), "{:?} printed as {:?}", text, printed);
        prop_assert_eq!(Expr::parse(&printed).map(|again| again.to_string()), Ok(printed.clone()));
        check_segment(&text)?;
    }

    #[test]
    fn nesting_up_to_the_limit_parses_and_deeper_is_refused_where_it_goes_too_deep(
        nots in 0..=MAX_DEPTH + 2,
        parens in 0..=MAX_DEPTH + 2,
    ) {
        let text = format!("{}{}dessert{}", "NOT ".repeat(nots), "(".repeat(parens), ")".repeat(parens));
        match Expr::parse(&text) {
            Ok(_) => prop_assert!(nots + parens <= MAX_DEPTH, "{} NOTs and {} parentheses", nots, parens),
            Err(e) => {
                prop_assert!(nots + parens > MAX_DEPTH, "{}", e);
                // The first NOT or parenthesis past the limit.
                let position = if nots > MAX_DEPTH { 4 * MAX_DEPTH } else { 4 * nots + (MAX_DEPTH - nots) };
                prop_assert_eq!(e.position, position, "{}", e);
            }
        }
    }

    // Spans, hours, time zones and active windows.

    #[test]
    fn spans_of_random_text(a in ".*", b in any::<String>(), c in "[0-9]{0,25}[smhdw%]?") {
        for text in [a, b, c] {
            check_span(&text)?;
        }
    }

    #[test]
    fn spans_of_any_number(
        n in prop_oneof![any::<u64>(), 0u64..4_000_000_000],
        unit in prop::sample::select(vec!["s", "m", "h", "d"]),
    ) {
        let text = format!("{n}{unit}");
        check_span(&text)?;
        let secs = match unit { "s" => 1u128, "m" => 60, "h" => 3_600, _ => 86_400 };
        let want = u128::from(n) * secs;
        match parse_span(&text) {
            Ok(d) => prop_assert_eq!(u128::from(d.as_secs()), want),
            Err(_) => prop_assert!(want > u128::from(MAX_SPAN.as_secs()), "{} refused", text),
        }
    }

    #[test]
    fn hours_of_random_text(a in ".*", b in any::<String>(), c in "[0-9 :+-]{0,20}") {
        for text in [a, b, c] {
            check_hours(&text)?;
        }
    }

    #[test]
    fn hours_that_are_valid_parse(
        (h1, m1, h2, m2) in (0i8..24, 0i8..60, 0i8..24, 0i8..60),
        space in prop::sample::select(vec!["", " "]),
    ) {
        let text = format!("{h1:02}:{m1:02}{space}-{space}{h2:02}:{m2:02}");
        check_hours(&text)?;
        match Hours::parse(&text) {
            Ok(h) => {
                prop_assert_eq!(h.start, jiff::civil::time(h1, m1, 0, 0));
                prop_assert_eq!(h.end, jiff::civil::time(h2, m2, 0, 0));
            }
            Err(message) => prop_assert!((h1, m1) == (h2, m2), "{}", message),
        }
    }

    #[test]
    fn time_zones_of_random_text(
        a in ".*",
        b in any::<String>(),
        c in "[+-][+-]?[0-9]{1,12}:[+-]?[0-9]{1,12}",
    ) {
        for text in [a, b, c] {
            check_zone(&text)?;
        }
    }

    #[test]
    fn time_zones_that_are_valid_parse(
        name in prop::sample::select(vec!["Asia/Taipei", "Asia/Tokyo", "UTC", "Europe/London", "America/New_York"]),
        (sign, h, m) in (prop::sample::select(vec!['+', '-']), 0u8..=14, 0u8..60),
    ) {
        let offset = format!("{sign}{h:02}:{m:02}");
        for text in [name, offset.as_str()] {
            prop_assert!(Zone::parse(text).is_ok(), "{}", text);
            check_zone(text)?;
        }
    }

    #[test]
    fn windows_of_random_text(a in ".*", b in any::<String>()) {
        for text in [a, b] {
            check_window(&text)?;
        }
    }

    #[test]
    fn windows_changed_in_one_place(text in prop::sample::select(WINDOW_DOCS).prop_flat_map(mutated)) {
        check_window(&text)?;
    }
}
