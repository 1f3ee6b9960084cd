//! The segment index in memory, built the way the tagger indexes friends: for the logic's tests
//! and for measuring the evaluator without storage.

use std::collections::BTreeMap;

use async_trait::async_trait;

use crate::ports::BackendError;
use crate::segment::resolve::{Member, MemberPage, ReadStats, SegmentIndex, Source};
use crate::segment::FriendFacts;
use crate::tagging::shard_of;

/// An index held in memory.
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
