//! Planning: the segment, page by page, minus opted-out friends and friends at a cap, minus the
//! holdout, cut at the budget, written as batches of at most 500 recipients. Preview runs the very
//! same classification without writing, so an unchanged population plans exactly as previewed.

use std::collections::HashMap;

use serde::Serialize;

use super::classify::Classifier;
use super::model::{BatchMessage, Campaign, PlanMessage, Skip, Skips, State};
use super::ports::{CampaignStore, CapStore};
use super::resume::{requeue, resumes_to, Requeued};
use crate::ports::{BackendError, Clock, WorkQueue};
use crate::segment::resolve::{Resolver, SegmentIndex};
use crate::segment::Expr;

/// What a preview found.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Counted {
    pub segment: u64,
    pub holdout: u64,
    pub skipped: Skips,
    /// Recipients: each one billable message, whatever the number of message objects.
    pub recipients: u64,
    pub batches: u64,
}

/// Resolves the whole segment and classifies it as the planner would (in pages of
/// `batch_size`), writing nothing.
pub async fn count(
    caps: &dyn CapStore,
    index: &dyn SegmentIndex,
    expr: &Expr,
    classifier: &Classifier,
    batch_size: u32,
    now_ms: i64,
) -> Result<Counted, BackendError> {
    let resolver = Resolver::new(index);
    let mut reader = resolver.reader(expr, now_ms, None);
    let mut counted = Counted::default();
    loop {
        let page = reader.next_page(batch_size as usize).await?;
        if !page.user_ids.is_empty() {
            let friends = caps.friend_caps(&page.user_ids, &classifier.demand).await?;
            let planned = classifier.classify(&page.user_ids, &friends, counted.recipients);
            counted.segment += planned.segment;
            counted.holdout += planned.holdout.len() as u64;
            for why in Skip::ALL {
                counted.skipped.add(why, planned.skipped.get(why));
            }
            counted.recipients += planned.to.len() as u64;
            counted.batches += u64::from(!planned.to.is_empty());
        }
        if page.next.is_none() {
            return Ok(counted);
        }
    }
}

/// How a planning invocation ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Planned {
    /// The segment is planned to the end.
    Finished { batches: u64 },
    /// Time ran short: a continuation was queued.
    Continued { pages: u32 },
    /// The campaign is not sending (paused, cancelled, another run, not yet due...).
    Stopped(String),
}

pub struct Planner<'a> {
    pub store: &'a dyn CampaignStore,
    pub caps: &'a dyn CapStore,
    pub index: &'a dyn SegmentIndex,
    /// multicast-queue.
    pub batches: &'a dyn WorkQueue,
    /// campaign-queue (continuations, and waiting for a schedule).
    pub plans: &'a dyn WorkQueue,
    pub clock: &'a dyn Clock,
}

impl Planner<'_> {
    /// Plans from the campaign's checkpoint on until the segment ends or `deadline` nears.
    pub async fn run(&self, message: &PlanMessage, deadline: tokio::time::Instant) -> Result<Planned, BackendError> {
        let Some(mut c) = self.store.get(&message.campaign).await? else {
            return Ok(Planned::Stopped("no such campaign".into()));
        };
        if c.run != message.run {
            return Ok(Planned::Stopped(format!("run {} was replaced by {}", message.run, c.run)));
        }
        let now = self.clock.now_ms();
        if let (State::Paused, Some(until)) = (c.state, c.resume_at_ms) {
            // Paused for quiet hours: look again in at most 15 minutes, or resume now.
            if until > now {
                let wait = ((until - now) / 1000 + 1).clamp(1, 900) as u32;
                self.plans.send(&PlanMessage::body(&c)?, wait).await?;
                return Ok(Planned::Stopped(format!("quiet hours: looking again in {wait} s")));
            }
            self.store.resume_from_quiet(&c.id, &c.run, until, resumes_to(&c, now)).await?;
            c = self.reload(&c.id).await?;
        }
        // A resume's plan message queues the open batches (from where an earlier requeue
        // stopped); held batches left behind (a resume cut short) are taken back and queued too.
        let from = message.requeue_from.or((c.counters.held > 0).then_some(0));
        if let (true, Some(from)) = (c.state.sends(), from) {
            if let Requeued::Stopped { next, .. } = requeue(
                self.store,
                self.caps,
                self.batches,
                &c,
                from,
                deadline.checked_sub(std::time::Duration::from_secs(5)).unwrap_or(deadline),
                now,
            )
            .await?
            {
                self.plans.send(&PlanMessage::requeue(&c, Some(next))?, 0).await?;
                return Ok(Planned::Continued { pages: 0 });
            }
        }
        if c.state == State::Scheduled {
            if c.not_before_ms > now {
                // SQS delays are at most 15 minutes: come back then and look again.
                let wait = ((c.not_before_ms - now) / 1000 + 1).clamp(1, 900) as u32;
                self.plans.send(&PlanMessage::body(&c)?, wait).await?;
                return Ok(Planned::Stopped(format!("scheduled: looking again in {wait} s")));
            }
            self.store.transition(&c.id, &c.run, &[State::Scheduled], State::Planning, None).await?;
            c = self.reload(&c.id).await?;
        }
        if !c.state.sends() {
            return Ok(Planned::Stopped(format!("campaign is {}", c.state.name())));
        }
        // The only batch that can be committed but not queued is the last one (a crash between
        // the two): queue it again; a duplicate is harmless.
        if let Some(last) = c.last_batch {
            self.batches.send(&BatchMessage::body(&c, last)?, 0).await?;
        }
        if c.plan_done {
            self.store.finish_if_done(&c).await?;
            return Ok(Planned::Finished { batches: c.counters.batches });
        }
        let expr = Expr::parse(&c.segment).map_err(|e| BackendError::Store {
            operation: "plan",
            message: format!("campaign {} has a bad segment: {e}", c.id),
        })?;
        let resolver = Resolver::new(self.index);
        let mut pages = 0u32;
        // One reader for the invocation: it keeps its place in every list between pages.
        let now = self.clock.now_ms();
        let mut reader = resolver.reader(&expr, now, c.cursor.as_ref());
        loop {
            let now = self.clock.now_ms();
            let classifier = Classifier::of(&c, now);
            let page = reader.next_page(c.batch_size as usize).await?;
            let friends = if page.user_ids.is_empty() {
                HashMap::new()
            } else {
                self.caps.friend_caps(&page.user_ids, &classifier.demand).await?
            };
            let planned = classifier.classify(&page.user_ids, &friends, c.counters.planned);
            if !self.store.commit_page(&c, &planned, page.next.as_ref(), now).await? {
                // Committed by another planner, or the campaign stopped: go on from what is stored.
                c = self.reload(&c.id).await?;
                if c.run != message.run || !c.state.sends() {
                    return Ok(Planned::Stopped(format!("campaign is {}", c.state.name())));
                }
                if c.plan_done {
                    return Ok(Planned::Finished { batches: c.counters.batches });
                }
                reader = resolver.reader(&expr, now, c.cursor.as_ref());
                continue;
            }
            pages += 1;
            let number = c.plan_page;
            // The stored campaign is what this copy becomes (the commit's condition held); a
            // pause or cancel since is seen by the next commit.
            c.commit(&planned, page.next.as_ref());
            if !planned.to.is_empty() {
                self.batches.send(&BatchMessage::body(&c, number)?, 0).await?;
            }
            if c.plan_done {
                self.store.finish_if_done(&c).await?;
                return Ok(Planned::Finished { batches: c.counters.batches });
            }
            if tokio::time::Instant::now() + std::time::Duration::from_secs(5) > deadline {
                self.plans.send(&PlanMessage::body(&c)?, 0).await?;
                return Ok(Planned::Continued { pages });
            }
        }
    }

    async fn reload(&self, id: &str) -> Result<Campaign, BackendError> {
        self.store
            .get(id)
            .await?
            .ok_or_else(|| BackendError::Store { operation: "GetItem", message: format!("campaign {id} vanished") })
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};

    use async_trait::async_trait;

    use super::*;
    use crate::adapters::memory::campaigns::{campaign, MemoryCampaigns};
    use crate::adapters::memory::queue::MemoryWorkQueue as MemoryQueue;
    use crate::adapters::memory::segment::MemoryIndex;
    use crate::campaign::caps::{Demand, FriendCaps, Reservation};
    use crate::campaign::ports::CampaignRepo;
    use crate::ports::SystemClock;
    use crate::segment::{FriendFacts, TagFacts};

    /// The memory caps, failing the `fail_at`-th page read once.
    struct Flaky<'a> {
        inner: &'a MemoryCampaigns,
        reads: AtomicUsize,
        fail_at: usize,
    }
    #[async_trait]
    impl CapStore for Flaky<'_> {
        async fn friend_caps(
            &self,
            users: &[String],
            demand: &Demand,
        ) -> Result<HashMap<String, FriendCaps>, BackendError> {
            if self.reads.fetch_add(1, Ordering::SeqCst) == self.fail_at {
                return Err(BackendError::Store { operation: "BatchGetItem", message: "injected".into() });
            }
            self.inner.friend_caps(users, demand).await
        }
        async fn reserve(&self, user: &str, demand: &Demand, now_ms: i64) -> Result<Reservation, BackendError> {
            self.inner.reserve(user, demand, now_ms).await
        }
        async fn release(&self, user: &str, demand: &Demand, attributes: &[String]) -> Result<(), BackendError> {
            self.inner.release(user, demand, attributes).await
        }
        async fn pushed(&self, user: &str, demand: &Demand, at_ms: i64) -> Result<(), BackendError> {
            self.inner.pushed(user, demand, at_ms).await
        }
    }

    /// `n` following friends tagged `dessert`, and a planning campaign `c` over `dessert`.
    fn dessert_friends(n: usize) -> (Vec<String>, MemoryIndex, MemoryCampaigns, Campaign) {
        let users: Vec<String> = (0..n).map(|i| format!("U{:032x}", i * 7919)).collect();
        let facts = FriendFacts {
            blocked: false,
            followed_at_ms: Some(0),
            tags: HashMap::from([("dessert".to_string(), TagFacts { tagged_at_ms: 0, expires_at_ms: None })]),
        };
        let index = MemoryIndex::new(users.iter().map(|u| (u.as_str(), &facts)));
        let store = MemoryCampaigns::default();
        users.iter().for_each(|u| store.add_friend(u, true, false));
        let mut c = campaign("c", &[], false);
        c.segment = "dessert".into();
        store.insert(c.clone());
        (users, index, store, c)
    }

    #[tokio::test]
    async fn a_planner_failing_at_a_page_resumes_from_its_checkpoint_and_plans_every_friend_once() {
        let (users, index, store, c) = dessert_friends(2_300);
        let (batches, plans) = (MemoryQueue::default(), MemoryQueue::default());
        let flaky = Flaky { inner: &store, reads: AtomicUsize::new(0), fail_at: 2 };
        let planner = Planner {
            store: &store,
            caps: &flaky,
            index: &index,
            batches: &batches,
            plans: &plans,
            clock: &SystemClock,
        };
        let message = PlanMessage { campaign: "c".into(), run: c.run.clone(), requeue_from: None };
        let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(60);
        assert!(planner.run(&message, deadline).await.is_err(), "the store failed at the third page");
        assert_eq!(store.campaign("c").unwrap().plan_page, 2, "two pages were committed");
        assert_eq!(planner.run(&message, deadline).await.unwrap(), Planned::Finished { batches: 5 });
        let c = store.campaign("c").unwrap();
        let mut planned: Vec<String> =
            (0..5).flat_map(|n| store.stored_batch(&c, n).map(|b| b.to).unwrap_or_default()).collect();
        assert_eq!(planned.len(), 2_300, "no friend in two batches");
        planned.sort();
        let mut all = users.clone();
        all.sort();
        assert_eq!(planned, all, "none lost");
        assert_eq!((c.counters.segment, c.counters.planned, c.counters.batches), (2_300, 2_300, 5));
        // Every batch was queued; the last committed one again when planning resumed.
        let queued: std::collections::BTreeSet<String> = batches.sent().into_iter().map(|(b, _)| b).collect();
        assert_eq!(queued.len(), 5);
    }

    #[tokio::test]
    async fn a_cancel_stops_planning_and_its_continuation_chain() {
        let (_, index, store, c) = dessert_friends(2_300);
        let (batches, plans) = (MemoryQueue::default(), MemoryQueue::default());
        let planner = Planner {
            store: &store,
            caps: &store,
            index: &index,
            batches: &batches,
            plans: &plans,
            clock: &SystemClock,
        };
        let message = PlanMessage { campaign: "c".into(), run: c.run.clone(), requeue_from: None };
        // Four seconds left: one page, then a continuation (queued 5 s before the deadline).
        let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(4);
        assert_eq!(planner.run(&message, deadline).await.unwrap(), Planned::Continued { pages: 1 });
        assert_eq!(plans.sent().len(), 1);
        assert!(store
            .transition("c", &c.run, &[State::Planning, State::Sending], State::Cancelled, None)
            .await
            .unwrap());
        // The continuation arrives: nothing more is planned, nothing more is queued.
        let later = tokio::time::Instant::now() + std::time::Duration::from_secs(60);
        assert!(matches!(planner.run(&message, later).await.unwrap(), Planned::Stopped(_)));
        let c = store.campaign("c").unwrap();
        assert_eq!((c.plan_page, c.counters.planned), (1, 500));
        assert_eq!((plans.sent().len(), batches.sent().len()), (1, 1));
    }
}
