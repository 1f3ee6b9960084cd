//! Resolution against the in-memory index: the same members as evaluating every friend.

use std::collections::HashMap;

use super::*;
use crate::adapters::memory::segment::MemoryIndex;

const NOW: i64 = 1_795_305_600_000;
const DAY: i64 = 86_400_000;

/// A population where friend i has tags by simple rules of i, so the truth is easy to state.
fn population(n: usize) -> Vec<(String, FriendFacts)> {
    (0..n)
        .map(|i| {
            let mut tags = HashMap::new();
            let tag = |at: i64, exp: Option<i64>| TagFacts { tagged_at_ms: at, expires_at_ms: exp };
            if i % 2 == 0 {
                tags.insert("dessert".to_string(), tag(NOW - DAY, None));
            }
            if i % 3 == 0 {
                tags.insert("vip".to_string(), tag(NOW - DAY, None));
            }
            if i % 5 == 0 {
                // Every other one set 5 days ago; every tenth one expired.
                let at = if i % 10 == 0 { NOW - 5 * DAY } else { NOW - DAY };
                let exp = if i % 20 == 0 { NOW - 1 } else { at + 7 * DAY };
                tags.insert("cart:open".to_string(), tag(at, Some(exp)));
            }
            let facts = FriendFacts { blocked: i % 7 == 0, followed_at_ms: Some(NOW - (i as i64 % 60) * DAY), tags };
            (format!("U{i:032x}"), facts)
        })
        .collect()
}

async fn check(friends: &[(String, FriendFacts)], expr: &str, index: &MemoryIndex) {
    let e = Expr::parse(expr).unwrap();
    let mut truth: Vec<&str> = friends.iter().filter(|(_, f)| e.matches(f, NOW)).map(|(u, _)| u.as_str()).collect();
    truth.sort();
    let resolver = Resolver::new(index);
    assert_eq!(resolver.count(&e, NOW).await.unwrap().friends, truth.len() as u64, "{expr}");
    // Pages of 7, resumed from their cursors, give every friend once.
    let mut got = vec![];
    let mut cursor = None;
    loop {
        let page = resolver.page(&e, NOW, cursor.as_ref(), 7).await.unwrap();
        got.extend(page.user_ids);
        match page.next {
            Some(c) => cursor = Some(c),
            None => break,
        }
    }
    got.sort();
    assert_eq!(got, truth, "{expr}");
    // One reader, page after page, gives the same.
    let mut reader = resolver.reader(&e, NOW, None);
    let mut streamed = vec![];
    loop {
        let page = reader.next_page(7).await.unwrap();
        streamed.extend(page.user_ids);
        if page.next.is_none() {
            break;
        }
    }
    streamed.sort();
    assert_eq!(streamed, truth, "{expr}");
}

#[tokio::test]
async fn every_kind_of_expression_resolves_to_exactly_the_friends_it_selects() {
    let friends = population(3000);
    let mut index = MemoryIndex::new(friends.iter().map(|(u, f)| (u.as_str(), f)));
    index.page_size = 50; // many pages per list
    for expr in [
        "dessert",
        "dessert AND NOT vip",
        "tagged(cart:open, within 3d) AND NOT buyer",
        "dessert OR vip",
        "(dessert OR cart:open) AND NOT (vip AND friend_since(30d))",
        "NOT dessert",
        "all",
        "friend_since(10d)",
        "nobody:has:this",
    ] {
        check(&friends, expr, &index).await;
    }
}

#[tokio::test]
async fn tag_expressions_read_only_their_tags() {
    let friends = population(3000);
    let index = MemoryIndex::new(friends.iter().map(|(u, f)| (u.as_str(), f)));
    let resolver = Resolver::new(&index);
    let dessert = resolver.count(&Expr::parse("dessert").unwrap(), NOW).await.unwrap();
    let listed = friends.iter().filter(|(_, f)| !f.blocked && f.tags.contains_key("dessert")).count();
    assert_eq!(dessert.read.items, listed as u64, "one read per dessert entry, nothing else");
    let all = resolver.count(&Expr::parse("all").unwrap(), NOW).await.unwrap();
    assert_eq!(all.read.items, friends.iter().filter(|(_, f)| !f.blocked).count() as u64);
}
