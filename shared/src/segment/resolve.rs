//! Resolving a segment: which friends an expression selects, read from the tag index.
//!
//! The index is split in [`SHARDS`] shards by user ID; within a shard every tag's members come
//! sorted by user ID. A shard is resolved by merging, in one pass, the sorted members of each tag the
//! expression names: each friend who appears under any of them is looked at once, with exactly the
//! facts the expression needs. Only `all`, a NOT or a friendship condition that no tag narrows also
//! read the friends index (every following friend) instead of a full table scan. Blocked friends are in
//! neither index, so they never come out. Shards are independent: counts read them in parallel, and
//! pages walk them in order with a [`Cursor`] that can be stored and resumed.

use std::collections::{BTreeMap, BTreeSet, VecDeque};

use async_trait::async_trait;
use futures::stream::{self, StreamExt, TryStreamExt};
use serde::{Deserialize, Serialize};

use super::{Expr, FriendFacts, TagFacts};
use crate::ports::BackendError;
use crate::tagging::{shard_of, SHARDS};

/// One list the resolver reads, per shard.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Source {
    /// Friends with the tag in the index (live when written; expiry is checked when read).
    Tag(String),
    /// Every following friend.
    Friends,
}

/// One entry of a list: a friend, and what the entry knows of them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Member {
    pub user_id: String,
    /// For tag lists: when the tag was set and when it expires.
    pub tagged_at_ms: i64,
    pub expires_at_ms: Option<i64>,
    pub followed_at_ms: Option<i64>,
}

/// What reading cost: items read, requests, and DynamoDB read capacity units where reported.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ReadStats {
    pub items: u64,
    pub requests: u64,
    pub capacity_units: f64,
}

impl ReadStats {
    fn since(self, before: ReadStats) -> ReadStats {
        ReadStats {
            items: self.items - before.items,
            requests: self.requests - before.requests,
            capacity_units: self.capacity_units - before.capacity_units,
        }
    }

    pub fn add(&mut self, other: ReadStats) {
        self.items += other.items;
        self.requests += other.requests;
        self.capacity_units += other.capacity_units;
    }
}

pub struct MemberPage {
    pub members: Vec<Member>,
    /// Whether more members follow the last one.
    pub more: bool,
    pub read: ReadStats,
}

/// The tag and friends indexes, as the resolver reads them.
#[async_trait]
pub trait SegmentIndex: Send + Sync {
    /// Members of `source` in `shard` with a user ID greater than `after`, ascending; `limit` is
    /// a hint of how many are wanted (one storage page when absent).
    async fn members(
        &self,
        source: &Source,
        shard: u16,
        after: Option<&str>,
        limit: Option<u32>,
    ) -> Result<MemberPage, BackendError>;
}

/// Where a paged resolution stopped: the shard, and the last user ID returned in it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Cursor {
    pub shard: u16,
    pub after: Option<String>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Counted {
    pub friends: u64,
    pub read: ReadStats,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Page {
    pub user_ids: Vec<String>,
    /// None: the segment is exhausted.
    pub next: Option<Cursor>,
    pub read: ReadStats,
}

pub struct Resolver<'a> {
    index: &'a dyn SegmentIndex,
    /// Shards read at once by [`Resolver::count`].
    parallel: usize,
}

impl<'a> Resolver<'a> {
    pub fn new(index: &'a dyn SegmentIndex) -> Self {
        Resolver { index, parallel: SHARDS as usize }
    }

    pub fn with_parallelism(mut self, parallel: usize) -> Self {
        self.parallel = parallel.max(1);
        self
    }

    /// How many friends `expr` selects at `now_ms`.
    pub async fn count(&self, expr: &Expr, now_ms: i64) -> Result<Counted, BackendError> {
        let per_shard: Vec<(u64, ReadStats)> = stream::iter(0..SHARDS)
            .map(|shard| async move {
                let mut n = 0u64;
                let mut merge = Merge::new(self.index, expr, shard, None, None);
                while merge.next_match(now_ms).await?.is_some() {
                    n += 1;
                }
                Ok::<_, BackendError>((n, merge.read))
            })
            .buffer_unordered(self.parallel)
            .try_collect()
            .await?;
        let mut read = ReadStats::default();
        per_shard.iter().for_each(|(_, r)| read.add(*r));
        Ok(Counted { friends: per_shard.iter().map(|(n, _)| n).sum(), read })
    }

    /// Up to `limit` user IDs from `cursor` on (the start when None), and where to go on.
    pub async fn page(
        &self,
        expr: &Expr,
        now_ms: i64,
        cursor: Option<&Cursor>,
        limit: usize,
    ) -> Result<Page, BackendError> {
        self.reader(expr, now_ms, cursor).next_page(limit).await
    }

    /// Reads the segment page after page from `cursor` on, keeping its place in every list
    /// between pages (a fresh [`Resolver::page`] per page would read the lists again from the cursor).
    pub fn reader<'e>(&self, expr: &'e Expr, now_ms: i64, cursor: Option<&Cursor>) -> SegmentReader<'e>
    where
        'a: 'e,
    {
        let (shard, after) = cursor.map_or((0, None), |c| (c.shard, c.after.clone()));
        SegmentReader { index: self.index, expr, now_ms, shard, after, merge: None }
    }
}

/// A segment being read in pages; see [`Resolver::reader`].
pub struct SegmentReader<'a> {
    index: &'a dyn SegmentIndex,
    expr: &'a Expr,
    now_ms: i64,
    shard: u16,
    /// The last user ID returned in `shard` (where a cursor resumes).
    after: Option<String>,
    merge: Option<Merge<'a>>,
}

impl<'a> SegmentReader<'a> {
    /// The next up to `limit` user IDs; `next` is None once the segment is exhausted.
    pub async fn next_page(&mut self, limit: usize) -> Result<Page, BackendError> {
        let mut user_ids = Vec::with_capacity(limit.min(10_000));
        let mut read = ReadStats::default();
        while self.shard < SHARDS && user_ids.len() < limit {
            let (index, expr, shard, after) = (self.index, self.expr, self.shard, self.after.clone());
            let merge = self.merge.get_or_insert_with(|| Merge::new(index, expr, shard, after, Some(FIRST_HINT)));
            let before = merge.read;
            let mut finished = false;
            while user_ids.len() < limit {
                match merge.next_match(self.now_ms).await? {
                    Some(user) => {
                        self.after = Some(user.clone());
                        user_ids.push(user);
                    }
                    None => {
                        finished = true;
                        break;
                    }
                }
            }
            read.add(merge.read.since(before));
            if finished {
                self.merge = None;
                self.shard += 1;
                self.after = None;
            }
        }
        let next = (self.shard < SHARDS).then(|| Cursor { shard: self.shard, after: self.after.clone() });
        Ok(Page { user_ids, next, read })
    }
}

/// Members asked for by a paged resolution's first read of a list, and at most later.
const FIRST_HINT: u32 = 50;
const MAX_HINT: u32 = 1000;

/// One source's members in one shard, fetched a page at a time.
struct Stream<'a> {
    index: &'a dyn SegmentIndex,
    source: Source,
    shard: u16,
    buffer: VecDeque<Member>,
    after: Option<String>,
    exhausted: bool,
    hint: Option<u32>,
}

impl<'a> Stream<'a> {
    async fn head(&mut self, read: &mut ReadStats) -> Result<Option<&Member>, BackendError> {
        while self.buffer.is_empty() && !self.exhausted {
            let page = self.index.members(&self.source, self.shard, self.after.as_deref(), self.hint).await?;
            // Small first reads, doubling: a page that needs few members of this list does not
            // read (and throw away) many more.
            self.hint = self.hint.map(|h| (h * 2).min(MAX_HINT));
            read.add(page.read);
            self.exhausted = !page.more;
            if let Some(last) = page.members.last() {
                self.after = Some(last.user_id.clone());
            }
            self.buffer.extend(page.members);
        }
        Ok(self.buffer.front())
    }
}

/// The merge of one shard: friends in user-ID order, each evaluated once.
struct Merge<'a> {
    expr: &'a Expr,
    /// The friends index, when the expression needs every friend as a candidate.
    friends: Option<Stream<'a>>,
    tags: Vec<(String, Stream<'a>)>,
    facts: FriendFacts,
    read: ReadStats,
}

impl<'a> Merge<'a> {
    fn new(index: &'a dyn SegmentIndex, expr: &'a Expr, shard: u16, after: Option<String>, hint: Option<u32>) -> Self {
        let stream = |source| Stream {
            index,
            source,
            shard,
            buffer: VecDeque::new(),
            after: after.clone(),
            exhausted: false,
            hint,
        };
        let mut names = BTreeSet::new();
        expr.tags(&mut |t| {
            names.insert(t.to_string());
        });
        Merge {
            expr,
            friends: expr.needs_scan().then(|| stream(Source::Friends)),
            tags: names.into_iter().map(|t| (t.clone(), stream(Source::Tag(t)))).collect(),
            facts: FriendFacts::default(),
            read: ReadStats::default(),
        }
    }

    /// The next friend of the shard the expression selects.
    async fn next_match(&mut self, now_ms: i64) -> Result<Option<String>, BackendError> {
        loop {
            // The next candidate: the next following friend, or the lowest head of the tag lists.
            let candidate = match &mut self.friends {
                Some(f) => match f.head(&mut self.read).await? {
                    Some(m) => m.user_id.clone(),
                    None => return Ok(None),
                },
                None => {
                    let mut lowest: Option<String> = None;
                    for (_, s) in &mut self.tags {
                        if let Some(m) = s.head(&mut self.read).await? {
                            if lowest.as_ref().is_none_or(|l| m.user_id < *l) {
                                lowest = Some(m.user_id.clone());
                            }
                        }
                    }
                    match lowest {
                        Some(l) => l,
                        None => return Ok(None),
                    }
                }
            };
            self.facts.tags.clear();
            self.facts.followed_at_ms = None;
            if let Some(m) = self.friends.as_mut().and_then(|f| f.buffer.pop_front()) {
                self.facts.followed_at_ms = m.followed_at_ms;
            }
            for (tag, s) in &mut self.tags {
                // Skip members that are not candidates (not following: a tag index entry that the
                // friends index has already dropped).
                while let Some(m) = s.head(&mut self.read).await? {
                    if m.user_id >= candidate {
                        break;
                    }
                    s.buffer.pop_front();
                }
                if let Some(m) = s.buffer.pop_front_if(|m| m.user_id == candidate) {
                    let facts = TagFacts { tagged_at_ms: m.tagged_at_ms, expires_at_ms: m.expires_at_ms };
                    self.facts.tags.insert(tag.clone(), facts);
                    self.facts.followed_at_ms = self.facts.followed_at_ms.or(m.followed_at_ms);
                }
            }
            if self.expr.matches(&self.facts, now_ms) {
                return Ok(Some(candidate));
            }
        }
    }
}

/// An index held in memory: for unit tests and for measuring the evaluator without storage.
#[derive(Default)]
pub struct MemoryIndex {
    lists: BTreeMap<(Source, u16), Vec<Member>>,
    /// Members per call when no limit is given (like a storage page).
    pub page_size: usize,
}

impl MemoryIndex {
    /// Indexes friends the way the tagger does: blocked friends in no list.
    pub fn new<'f>(friends: impl IntoIterator<Item = (&'f str, &'f FriendFacts)>) -> Self {
        let mut lists: BTreeMap<(Source, u16), Vec<Member>> = BTreeMap::new();
        for (user, facts) in friends.into_iter().filter(|(_, f)| !f.blocked) {
            let shard = shard_of(user);
            let member = |tagged_at_ms, expires_at_ms| Member {
                user_id: user.to_string(),
                tagged_at_ms,
                expires_at_ms,
                followed_at_ms: facts.followed_at_ms,
            };
            lists.entry((Source::Friends, shard)).or_default().push(member(0, None));
            for (tag, t) in &facts.tags {
                lists
                    .entry((Source::Tag(tag.clone()), shard))
                    .or_default()
                    .push(member(t.tagged_at_ms, t.expires_at_ms));
            }
        }
        lists.values_mut().for_each(|l| l.sort_by(|a, b| a.user_id.cmp(&b.user_id)));
        MemoryIndex { lists, page_size: 1000 }
    }
}

#[async_trait]
impl SegmentIndex for MemoryIndex {
    async fn members(
        &self,
        source: &Source,
        shard: u16,
        after: Option<&str>,
        limit: Option<u32>,
    ) -> Result<MemberPage, BackendError> {
        let list = self.lists.get(&(source.clone(), shard)).map(Vec::as_slice).unwrap_or_default();
        let start = after.map_or(0, |a| list.partition_point(|m| m.user_id.as_str() <= a));
        let n = limit.map_or(self.page_size, |l| l as usize).max(1);
        let end = (start + n).min(list.len());
        let members = list.get(start..end).unwrap_or_default().to_vec();
        let read = ReadStats { items: members.len() as u64, requests: 1, capacity_units: 0.0 };
        Ok(MemberPage { members, more: end < list.len(), read })
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::*;

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
                let facts =
                    FriendFacts { blocked: i % 7 == 0, followed_at_ms: Some(NOW - (i as i64 % 60) * DAY), tags };
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
}
