//! A friend's tags as stored, and how an event changes them: pure code, so the tagger only reads,
//! plans and writes.
//!
//! Every tag item remembers the event time of its last change (`changed_at_ms`). A change from an
//! older event is ignored, so events applied out of order (a shop event that arrives late) never
//! undo newer ones; removing a tag leaves a tombstone for the same reason. Whether an item is in
//! the tag index (`indexed`) follows from the item and the friend: live (not removed, not expired)
//! and the friend has not blocked the account. Segments read only the index, so blocked friends and
//! removed tags never reach them.

use std::collections::{BTreeMap, HashMap};

use crate::rules::tags::{Change, TagOp};

/// The tag index and the friends index are split in this many shards: each shard is one index
/// partition, read in parallel, and holds a disjoint set of friends, sorted by user ID.
pub const SHARDS: u16 = 16;

/// The shard of a friend: a stable hash (FNV-1a) of the user ID.
pub fn shard_of(user_id: &str) -> u16 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in user_id.bytes() {
        h ^= b as u64;
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    (h % SHARDS as u64) as u16
}

/// Partition key of a tag's index shard: `<tag>#<shard>`.
pub fn tag_index_key(tag: &str, shard: u16) -> String {
    format!("{tag}#{shard:02}")
}

/// Partition key of a friends-index shard: `f#<shard>`.
pub fn friend_index_key(shard: u16) -> String {
    format!("f#{shard:02}")
}

/// Removed tags are remembered this long, so an older event arriving late cannot bring them back.
pub const TOMBSTONE_MS: i64 = 90 * 86_400_000;
/// Expired tags are deleted by DynamoDB's TTL this long after they expire.
pub const EXPIRED_GRACE_MS: i64 = 86_400_000;

/// One stored tag of one friend.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TagItem {
    pub tag: String,
    /// False: removed (a tombstone).
    pub active: bool,
    /// Event time the tag was (last) set.
    pub tagged_at_ms: i64,
    pub expires_at_ms: Option<i64>,
    pub source: String,
    /// Event time of the last change: older events leave the item alone.
    pub changed_at_ms: i64,
    /// In the tag index (segments see it).
    pub indexed: bool,
    /// The friend's first follow, copied here so segments can read it from the index.
    pub followed_at_ms: Option<i64>,
    /// Optimistic-lock version: a write expects the version it read.
    pub version: u64,
}

impl TagItem {
    pub fn is_live(&self, now_ms: i64) -> bool {
        self.active && self.expires_at_ms.is_none_or(|e| e > now_ms)
    }

    /// When DynamoDB may delete the item (ms): tombstones and expired tags go, live ones stay.
    pub fn delete_after_ms(&self) -> Option<i64> {
        if !self.active {
            Some(self.changed_at_ms.max(self.tagged_at_ms) + TOMBSTONE_MS)
        } else {
            self.expires_at_ms.map(|e| e + EXPIRED_GRACE_MS)
        }
    }

    fn same_content(&self, other: &TagItem) -> bool {
        TagItem { version: other.version, ..self.clone() } == *other
    }
}

/// What the tagger knows of the friend when it plans.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct FriendState {
    pub blocked: bool,
    pub followed_at_ms: Option<i64>,
}

/// One item to write: what was read (None: new) and what it becomes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TagWrite {
    pub old: Option<TagItem>,
    pub new: TagItem,
}

/// The writes that apply `ops` (from an event at `event_ms`) to a friend whose items are
/// `current`, and bring every item's index entry in line with `friend` (blocked, first follow).
/// Items that would not change are not written, so planning again after a partial write, or for a
/// duplicate event, writes nothing new.
pub fn plan(current: &[TagItem], friend: FriendState, ops: &[TagOp], event_ms: i64, now_ms: i64) -> Vec<TagWrite> {
    let mut items: BTreeMap<String, TagItem> = current.iter().map(|i| (i.tag.clone(), i.clone())).collect();
    for op in ops {
        let existing = items.get(&op.tag);
        if existing.is_some_and(|e| e.changed_at_ms > event_ms) {
            continue; // a newer event already decided this tag
        }
        let next = match op.change {
            Change::Add { expires_after } => {
                let expires_at_ms = expires_after.map(|d| event_ms + d.as_millis() as i64);
                if expires_at_ms.is_some_and(|e| e <= now_ms) {
                    continue; // already over: nothing to add
                }
                TagItem {
                    tag: op.tag.clone(),
                    active: true,
                    tagged_at_ms: event_ms,
                    expires_at_ms,
                    source: op.source.clone(),
                    changed_at_ms: event_ms,
                    indexed: false,
                    followed_at_ms: None,
                    version: existing.map_or(0, |e| e.version),
                }
            }
            Change::Remove => match existing {
                Some(e) if !e.active => continue,
                Some(e) => TagItem { active: false, source: op.source.clone(), changed_at_ms: event_ms, ..e.clone() },
                // Nothing to remove, but a tombstone keeps an older, late "add" out.
                None => TagItem {
                    tag: op.tag.clone(),
                    active: false,
                    tagged_at_ms: event_ms,
                    expires_at_ms: None,
                    source: op.source.clone(),
                    changed_at_ms: event_ms,
                    indexed: false,
                    followed_at_ms: None,
                    version: 0,
                },
            },
        };
        items.insert(op.tag.clone(), next);
    }
    let before: HashMap<&str, &TagItem> = current.iter().map(|i| (i.tag.as_str(), i)).collect();
    items
        .into_values()
        .filter_map(|mut item| {
            item.indexed = item.is_live(now_ms) && !friend.blocked;
            item.followed_at_ms = friend.followed_at_ms;
            let old = before.get(item.tag.as_str()).map(|o| (*o).clone());
            match &old {
                Some(o) if o.same_content(&item) => None,
                _ => Some(TagWrite { old, new: item }),
            }
        })
        .collect()
}

/// Per-tag friend counts are counters bucketed by the hour the tag expires (`never` for tags
/// that do not), so a count read skips buckets in the past without touching the items.
pub fn count_bucket(expires_at_ms: Option<i64>) -> String {
    match expires_at_ms {
        None => "never".into(),
        Some(e) => format!("{}", (e + HOUR_MS - 1) / HOUR_MS),
    }
}

pub const HOUR_MS: i64 = 3_600_000;

/// Whether a bucket still counts at `now_ms`: `never`, or an hour that has not ended.
pub fn bucket_counts(bucket: &str, now_ms: i64) -> bool {
    bucket == "never" || bucket.parse::<i64>().is_ok_and(|h| h * HOUR_MS > now_ms)
}

/// The counter changes of `writes`: (tag, bucket) → delta, zeros left out.
pub fn count_deltas(writes: &[TagWrite]) -> BTreeMap<(String, String), i64> {
    let mut deltas: BTreeMap<(String, String), i64> = BTreeMap::new();
    for w in writes {
        if let Some(old) = w.old.as_ref().filter(|o| o.indexed) {
            *deltas.entry((old.tag.clone(), count_bucket(old.expires_at_ms))).or_default() -= 1;
        }
        if w.new.indexed {
            *deltas.entry((w.new.tag.clone(), count_bucket(w.new.expires_at_ms))).or_default() += 1;
        }
    }
    deltas.retain(|_, d| *d != 0);
    deltas
}

/// Splits `writes` into transactions of at most `max_actions` actions each, where every
/// transaction carries the counter updates of its own writes ([`count_deltas`] of the part) and
/// room for `extra` more actions (the friend's row, the idempotency record: they go in the last).
/// So each transaction that commits leaves the items and the counters in agreement, whatever
/// becomes of the next one; a later one that fails is planned again from what is stored.
pub fn transactions(writes: &[TagWrite], extra: usize, max_actions: usize) -> Vec<Vec<TagWrite>> {
    let mut parts: Vec<Vec<TagWrite>> = vec![];
    let mut part: Vec<TagWrite> = vec![];
    for w in writes {
        part.push(w.clone());
        if part.len() > 1 && part.len() + count_deltas(&part).len() + extra > max_actions {
            let last = part.pop();
            parts.push(std::mem::take(&mut part));
            part.extend(last);
        }
    }
    parts.push(part);
    parts
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    const T: i64 = 1_795_305_600_000;
    const DAY: i64 = 86_400_000;
    const FRIEND: FriendState = FriendState { blocked: false, followed_at_ms: Some(T - 100 * DAY) };

    fn add(tag: &str, days: Option<u64>) -> TagOp {
        let expires_after = days.map(|d| Duration::from_secs(d * 86_400));
        TagOp { tag: tag.into(), change: Change::Add { expires_after }, source: "test".into() }
    }

    fn remove(tag: &str) -> TagOp {
        TagOp { tag: tag.into(), change: Change::Remove, source: "test".into() }
    }

    /// Applies the plan like the store would: new versions replace old ones.
    fn apply(items: &mut Vec<TagItem>, writes: &[TagWrite]) {
        for w in writes {
            items.retain(|i| i.tag != w.new.tag);
            items.push(TagItem { version: w.new.version + 1, ..w.new.clone() });
        }
    }

    fn step(items: &mut Vec<TagItem>, friend: FriendState, ops: &[TagOp], event: i64, now: i64) {
        let writes = plan(items, friend, ops, event, now);
        apply(items, &writes);
    }

    fn live(items: &[TagItem], now: i64) -> Vec<&str> {
        let mut v: Vec<&str> = items.iter().filter(|i| i.indexed && i.is_live(now)).map(|i| i.tag.as_str()).collect();
        v.sort();
        v
    }

    #[test]
    fn a_purchase_removes_the_open_cart_and_an_older_cart_event_cannot_reopen_it() {
        let mut items = vec![];
        step(&mut items, FRIEND, &[add("cart:open", Some(7))], T, T);
        assert_eq!(live(&items, T), ["cart:open"]);
        let purchase = [remove("cart:open"), add("buyer", None)];
        step(&mut items, FRIEND, &purchase, T + 1000, T + 1000);
        assert_eq!(live(&items, T + 1000), ["buyer"]);
        // An add_to_cart from before the purchase, delivered late, changes nothing.
        assert!(plan(&items, FRIEND, &[add("cart:open", Some(7))], T + 500, T + 2000).is_empty());
        // A new one after it opens the cart again.
        step(&mut items, FRIEND, &[add("cart:open", Some(7))], T + 3000, T + 3000);
        assert_eq!(live(&items, T + 3000), ["buyer", "cart:open"]);
    }

    #[test]
    fn the_same_event_planned_twice_writes_nothing_the_second_time() {
        let mut items = vec![];
        let ops = [add("dessert", None), remove("vip")];
        step(&mut items, FRIEND, &ops, T, T);
        assert_eq!(items.len(), 2, "the removal leaves a tombstone");
        assert!(plan(&items, FRIEND, &ops, T, T + 10).is_empty());
    }

    #[test]
    fn blocking_takes_every_tag_out_of_the_index_and_following_again_puts_them_back() {
        let mut items = vec![];
        step(&mut items, FRIEND, &[add("dessert", None), add("vip", None)], T, T);
        let blocked = FriendState { blocked: true, ..FRIEND };
        let writes = plan(&items, blocked, &[], T + 1, T + 1);
        assert_eq!(writes.len(), 2);
        assert_eq!(count_deltas(&writes).values().sum::<i64>(), -2);
        apply(&mut items, &writes);
        assert!(live(&items, T + 1).is_empty());
        // A tag set while blocked is kept but not indexed.
        step(&mut items, blocked, &[add("buyer", None)], T + 2, T + 2);
        assert!(live(&items, T + 2).is_empty());
        let writes = plan(&items, FRIEND, &[], T + 3, T + 3);
        assert_eq!(count_deltas(&writes).values().sum::<i64>(), 3);
        apply(&mut items, &writes);
        assert_eq!(live(&items, T + 3), ["buyer", "dessert", "vip"]);
    }

    #[test]
    fn expired_tags_leave_the_index_and_their_counter_bucket_stops_counting() {
        let mut items = vec![];
        step(&mut items, FRIEND, &[add("cart:open", Some(7))], T, T);
        let bucket = count_bucket(items[0].expires_at_ms);
        assert!(bucket_counts(&bucket, T + 7 * DAY - 1));
        assert!(!bucket_counts(&bucket, T + 7 * DAY + HOUR_MS));
        assert!(bucket_counts("never", i64::MAX));
        // The next event of this friend after expiry drops it from the index.
        let writes = plan(&items, FRIEND, &[], T + 8 * DAY, T + 8 * DAY);
        assert_eq!(writes.len(), 1);
        assert!(!writes[0].new.indexed);
        assert_eq!(writes[0].new.delete_after_ms(), Some(T + 7 * DAY + EXPIRED_GRACE_MS));
        // An add whose expiry has already passed writes nothing.
        assert!(plan(&[], FRIEND, &[add("cart:open", Some(7))], T - 8 * DAY, T).is_empty());
    }

    #[test]
    fn re_adding_a_tag_moves_its_time_and_its_counter_bucket() {
        let mut items = vec![];
        step(&mut items, FRIEND, &[add("cart:open", Some(7))], T, T);
        let writes = plan(&items, FRIEND, &[add("cart:open", Some(7))], T + 2 * DAY, T + 2 * DAY);
        assert_eq!(writes[0].new.tagged_at_ms, T + 2 * DAY);
        let deltas: Vec<i64> = count_deltas(&writes).into_values().collect();
        assert_eq!(deltas, [-1, 1]);
    }

    #[test]
    fn every_transaction_carries_its_own_counters_and_fits() {
        // A friend with 150 tags, 40 of them expiring, blocks the account: every item leaves the
        // index, so every item and its counter bucket changes.
        let mut items = vec![];
        let ops: Vec<TagOp> =
            (0..150).map(|i| add(&format!("t{i:03}"), (i % 4 == 0).then_some(7 + i as u64 % 3))).collect();
        step(&mut items, FRIEND, &ops, T, T);
        let writes = plan(&items, FriendState { blocked: true, ..FRIEND }, &[], T + 1, T + 1);
        assert_eq!(writes.len(), 150);
        let parts = transactions(&writes, 2, 100);
        assert!(parts.len() >= 2, "{} parts", parts.len());
        assert_eq!(parts.iter().map(Vec::len).sum::<usize>(), 150, "every write, once");
        let mut total: BTreeMap<(String, String), i64> = BTreeMap::new();
        for part in &parts {
            let own = count_deltas(part);
            assert!(part.len() + own.len() + 2 <= 100, "a part of {} actions", part.len() + own.len() + 2);
            // Committing only this part: the counters move by exactly what its items changed.
            let removed = part.iter().filter(|w| w.old.as_ref().is_some_and(|o| o.indexed)).count() as i64;
            assert_eq!(own.values().sum::<i64>(), -removed);
            for (k, d) in own {
                *total.entry(k).or_default() += d;
            }
        }
        total.retain(|_, d| *d != 0);
        assert_eq!(total, count_deltas(&writes), "the parts add up to the whole");
        assert_eq!(transactions(&[], 2, 100), vec![Vec::<TagWrite>::new()], "extras alone: one transaction");
    }

    #[test]
    fn shards_are_stable_and_spread() {
        assert_eq!(shard_of("U0123456789abcdef0123456789abcdef"), shard_of("U0123456789abcdef0123456789abcdef"));
        let mut seen = [0u32; SHARDS as usize];
        for i in 0..16_000 {
            seen[shard_of(&format!("U{i:032x}")) as usize] += 1;
        }
        assert!(seen.iter().all(|&n| (800..1200).contains(&n)), "{seen:?}");
    }
}
