//! Tag rules read from a whole rules file (through [`RuleBook`]) and applied.

use super::*;
use crate::rules::RuleBook;

const FILE: &str = r#"
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
    - id: q-dessert-yes
      match: { exact: "q=dessert&a=yes" }
      add: [dessert]
    - id: q-dessert-no
      match: { exact: "q=dessert&a=no" }
      remove: [dessert]
"#;

fn names(ops: &[TagOp]) -> Vec<String> {
    ops.iter()
        .map(|o| match o.change {
            Change::Add { .. } => format!("+{}", o.tag),
            Change::Remove => format!("-{}", o.tag),
        })
        .collect()
}

#[test]
fn keywords_postbacks_follows_and_shop_events_name_their_tags() {
    let book = RuleBook::parse(FILE).unwrap();
    let t = book.tags();
    assert_eq!(names(&t.ops(TagTrigger::Text("ＰＵＤＤＩＮＧ please"))), ["+dessert"]);
    assert_eq!(names(&t.ops(TagTrigger::Text("チーズケーキ"))), ["+dessert"]);
    let vip = t.ops(TagTrigger::Text("VIP"));
    assert_eq!(vip[0].change, Change::Add { expires_after: Some(Duration::from_secs(2 * 86_400)) });
    assert_eq!(vip[0].source, "keyword:vip-ask");
    assert!(t.ops(TagTrigger::Text("hello")).is_empty());
    assert_eq!(names(&t.ops(TagTrigger::Postback("q=dessert&a=no"))), ["-dessert"]);
    assert!(t.ops(TagTrigger::Postback("Q=dessert&a=no")).is_empty(), "postback data is compared as sent");
    assert_eq!(names(&t.ops(TagTrigger::Follow { unblocked: false })), ["-friend:returning", "+friend:new"]);
    assert_eq!(names(&t.ops(TagTrigger::Follow { unblocked: true })), ["-friend:new", "+friend:returning"]);

    let props = serde_json::json!({"category": ["Shoes", "Sweets & Cakes"], "total": 3200});
    let props = props.as_object().unwrap();
    let buy = t.ops(TagTrigger::Shop { kind: "purchase", properties: props });
    assert_eq!(names(&buy), ["-cart:open", "+bought:shoes", "+bought:sweets_cakes", "+buyer"]);
    let cart = t.ops(TagTrigger::Shop { kind: "add_to_cart", properties: props });
    assert_eq!(cart[0].change, Change::Add { expires_after: Some(Duration::from_secs(7 * 86_400)) });
    let no_category = t.ops(TagTrigger::Shop { kind: "purchase", properties: &Map::new() });
    assert_eq!(names(&no_category), ["-cart:open", "+buyer"]);
    assert!(t.ops(TagTrigger::Shop { kind: "view_product", properties: props }).is_empty());
}

#[test]
fn shop_and_follow_tags_are_configurable() {
    let book =
        RuleBook::parse("tags:\n  shop: {}\n  follow:\n    newFriend: { add: [newbie], expires: 30d }\n").unwrap();
    let t = book.tags();
    assert!(t.ops(TagTrigger::Shop { kind: "purchase", properties: &Map::new() }).is_empty());
    assert_eq!(names(&t.ops(TagTrigger::Follow { unblocked: false })), ["+newbie"]);
    assert!(t.ops(TagTrigger::Follow { unblocked: true }).is_empty());
}

#[test]
fn bad_tags_are_reported_where_they_are() {
    let cases = [
        ("tags:\n  keywords:\n    - id: a\n      match: { exact: x }\n      add: [Dessert]\n", 5, "is not a tag"),
        ("tags:\n  shop:\n    purchase: { add: [\"bought:{cat\"] }\n", 3, "without '}'"),
        ("tags:\n  shop:\n    purchase: { add: [x], expires: soon }\n", 3, "duration"),
        ("tags:\n  follow:\n    newFriend: { tag: [x] }\n", 3, "unknown field"),
        ("replies: []\ntags:\n  keywords:\n    - id: a\n      match: { exact: x }\n", 4, "neither adds nor removes"),
        (
            "tags:\n  keywords:\n    - { id: a, match: { exact: x }, add: [y] }\n    - { id: a, match: { exact: z }, add: [y] }\n",
            4,
            "used twice",
        ),
    ];
    for (text, line, message) in cases {
        let e = RuleBook::parse(text).err().expect(text);
        assert_eq!(e.location.map(|l| l.0), Some(line), "{text}: {e}");
        assert!(e.message.contains(message), "{text}: {e}");
    }
}

#[test]
fn a_long_property_list_makes_a_bounded_number_of_tags() {
    let book = RuleBook::parse("{}").unwrap();
    let categories: Vec<Value> = (0..500).map(|i| Value::String(format!("c{i}"))).collect();
    let props: Map<String, Value> = [("category".to_string(), Value::Array(categories))].into_iter().collect();
    let ops = book.tags().ops(TagTrigger::Shop { kind: "purchase", properties: &props });
    // buyer, cart:open (removed) and at most 20 bought:<category>.
    assert_eq!(ops.len(), 2 + MAX_VALUES_PER_PLACEHOLDER);
}

#[test]
fn shop_values_become_tag_text() {
    assert_eq!(tag_value(" Sweets & Cakes "), "sweets_cakes");
    assert_eq!(tag_value("スイーツ"), "スイーツ");
    assert_eq!(tag_value("ＳＨＯＥＳ"), "shoes");
}
