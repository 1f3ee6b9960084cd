//! Resolving a segment: which friends an expression selects, read from the tag index.
//!
//! The index is split in [`SHARDS`] shards by user ID; within a shard every tag's members come
//! sorted by user ID. A shard is resolved by merging, in one pass, the sorted members of each tag the
//! expression names: each friend who appears under any of them is looked at once, with exactly the
//! facts the expression needs. Only `all`, a NOT or a friendship condition that no tag narrows also
//! read the friends index (every following friend) instead of a full table scan. Blocked friends are in
//! neither index, so they never come out. Shards are independent: counts read them in parallel, and
//! pages walk them in order with a [`Cursor`] that can be stored and resumed.

use std::collections::{BTreeSet, VecDeque};

use async_trait::async_trait;
use futures::stream::{self, StreamExt, TryStreamExt};
use serde::{Deserialize, Serialize};

use super::{Expr, FriendFacts, TagFacts};
use crate::ports::BackendError;
use crate::tagging::SHARDS;

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

#[cfg(test)]
mod tests;
