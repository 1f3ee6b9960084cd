//! What people do to campaigns (`oa campaign`, `oa suppress`, the opt-outs of `oa settings
//! apply`), written against the ports: create, preview, start, pause, resume, cancel, resolve,
//! list and show, opt friends out and back in, and a test push. `oa` reads the files and the
//! settings and prints; this decides.

use serde_json::{json, Value};

use super::batch::{retry_key, BatchState};
use super::caps::Demand;
use super::classify::Classifier;
use super::file::{AccountSettings, CampaignFile};
use super::give_back::{give_back, give_back_unsent};
use super::model::{Campaign, Created, PlanMessage, State};
use super::plan::count;
use super::ports::{CampaignAdmin, Multicaster};
use super::price::Plan;
use super::resume::{requeue, resumes_to, Requeued};
use crate::line::answer::LineError;
use crate::ports::{BackendError, WorkQueue};
use crate::segment::resolve::SegmentIndex;
use crate::segment::Expr;
use tokio::time::Instant;

/// How long `resume` queues batches itself; the plan message it sent first has the planner queue
/// the rest.
const RESUME_WITHIN: std::time::Duration = std::time::Duration::from_secs(60);
/// The delay of the plan message a resume sends before anything else: past [`RESUME_WITHIN`].
const RESUME_SAFETY_NET_SECS: u32 = 90;

/// Why a command did nothing. The texts are what `oa` prints.
#[derive(Debug, thiserror::Error)]
pub enum AdminError {
    #[error("no campaign {0}")]
    NoSuchCampaign(String),
    #[error("campaign {id} exists and is {}: cancel it first, or use another id", .state.name())]
    InUse { id: String, state: State },
    #[error("campaign {id} is {}, not a draft", .state.name())]
    NotADraft { id: String, state: State },
    #[error("campaign {id} is {}: cannot go to {}", .state.name(), .to.name())]
    CannotGo { id: String, state: State, to: State },
    #[error("campaign {id} is {}: only a paused or sending one resumes", .state.name())]
    CannotResume { id: String, state: State },
    #[error("campaign {id} vanished")]
    Vanished { id: String },
    #[error("campaign {id}: batch {batch} of its last run is being sent right now; try again in a minute")]
    Busy { id: String, batch: u32 },
    #[error("{0}")]
    Invalid(String),
    #[error(transparent)]
    Backend(#[from] BackendError),
    #[error(transparent)]
    Line(#[from] LineError),
}

/// What a preview is of: a campaign file not created yet, or a created campaign.
pub enum Previewed<'a> {
    File(&'a CampaignFile),
    Stored(&'a str),
}

/// What `resolve` did: batches and recipients resolved, and the campaign after.
#[derive(Debug, Clone)]
pub struct Resolved {
    pub batches: usize,
    pub recipients: u64,
    pub campaign: Campaign,
}

/// The people's commands, over the admin port and the two queues.
pub struct Admin<'a> {
    pub store: &'a dyn CampaignAdmin,
    /// campaign-queue: plan messages.
    pub plans: &'a dyn WorkQueue,
    /// multicast-queue: batch messages.
    pub batches: &'a dyn WorkQueue,
}

impl Admin<'_> {
    pub async fn get(&self, id: &str) -> Result<Campaign, AdminError> {
        self.store.get(id).await?.ok_or_else(|| AdminError::NoSuchCampaign(id.to_string()))
    }

    async fn reread(&self, id: &str) -> Result<Campaign, AdminError> {
        self.store.get(id).await?.ok_or_else(|| AdminError::Vanished { id: id.to_string() })
    }

    /// Every campaign, newest first.
    pub async fn list(&self) -> Result<Vec<Campaign>, AdminError> {
        Ok(self.store.list().await?)
    }

    /// Creates a campaign from its file (`source`: the file's text) as a draft, or re-creates one
    /// that is a draft, cancelled or done, with a new run. Friends an earlier run of the same id
    /// was sent to are skipped (`alreadySent`) unless `resend`.
    pub async fn create(
        &self,
        file: &CampaignFile,
        source: &str,
        resend: bool,
        now_ms: i64,
    ) -> Result<Campaign, AdminError> {
        // The run being replaced gives back what its batches reserved and LINE surely never
        // took: its friends were not reached, and must not count as `alreadySent`.
        if let Some(old) = self.store.get(&file.id).await? {
            if matches!(old.state, State::Draft | State::Cancelled | State::Done) {
                let owner = format!("oa-{}", crate::campaign::model::uuid_simple());
                for (number, _) in self.store.open_batches(&old).await? {
                    if !give_back_unsent(self.store, self.store, &old, number, &owner, now_ms, 60_000).await? {
                        return Err(AdminError::Busy { id: file.id.clone(), batch: number });
                    }
                }
                // And a failed batch a resolve (`--not-delivered`) cut short left reserved.
                for (number, _) in self.store.batches_in(&old, &[BatchState::Failed]).await? {
                    if let Some(batch) = self.store.batch(&old, number).await?.filter(|b| b.slots_to_give_back()) {
                        give_back(self.store, self.store, &old, &batch, now_ms).await?;
                    }
                }
            }
        }
        match self.store.create(file, source, resend, now_ms).await? {
            Created::Created { .. } => self.reread(&file.id).await,
            Created::InUse { state } => Err(AdminError::InUse { id: file.id.clone(), state }),
        }
    }

    /// Who would get a campaign, who not and why, and the price on the account's plan and LINE's
    /// month so far. A stored campaign keeps its preview, to compare with what it sends.
    pub async fn preview(
        &self,
        of: Previewed<'_>,
        settings: &AccountSettings,
        index: &dyn SegmentIndex,
        line: &dyn Multicaster,
        now_ms: i64,
    ) -> Result<Value, AdminError> {
        let (id, member, segment, transactional, holdout, budget, batch_size, resend, stored) = match of {
            Previewed::File(f) => {
                let budget = f.budget.map(|b| b.messages);
                let member = format!("{}~preview", f.id);
                (
                    f.id.clone(),
                    member,
                    f.segment.clone(),
                    f.transactional,
                    f.holdout,
                    budget,
                    f.batch_size,
                    false,
                    false,
                )
            }
            Previewed::Stored(id) => {
                let c = self.get(id).await?;
                let member = c.cap_member();
                let (segment, holdout) = (c.segment.clone(), c.holdout_bps);
                (c.id.clone(), member, segment, c.transactional, holdout, c.budget, c.batch_size, c.resend, true)
            }
        };
        let expr = Expr::parse(&segment).map_err(|e| AdminError::Invalid(e.to_string()))?;
        let gap = settings.min_gap.map_or(0, |g| g.as_millis() as i64);
        let demand = Demand::new(member, &settings.caps, &settings.timezone, transactional, gap, now_ms)
            .once_per_campaign(&id, resend);
        let classifier = Classifier::new(&id, demand, holdout, budget, now_ms);
        let counted = count(self.store, index, &expr, &classifier, batch_size, now_ms).await?;
        let month = line.month().await?;
        let plan = settings.plan.resolve().map_err(|e| AdminError::Invalid(e.to_string()))?;
        let quote = plan.quote(month, counted.recipients);
        let preview = json!({
            "campaign": id,
            "segment": counted.segment,
            "holdout": counted.holdout,
            "skipped": {
                "holdout": counted.holdout,
                "cap": counted.skipped.cap,
                "budget": counted.skipped.budget,
                "suppressed": counted.skipped.suppressed,
                "blocked": counted.skipped.blocked,
                "alreadySent": counted.skipped.already_sent,
            },
            "recipients": counted.recipients,
            "billable": counted.recipients,
            "batches": counted.batches,
            "month": month,
            "plan": plan_label(&plan),
            "planTerms": plan,
            "price": quote,
            "previewedAt": now_ms,
        });
        if stored {
            self.store.save_preview(&id, &preview).await?;
        }
        Ok(preview)
    }

    /// Starts a draft under the account's settings now (caps, time zone, policy) and queues its
    /// planning. A campaign already started gets its plan message again (planning goes on from
    /// its checkpoint, so a start whose message was lost can simply be repeated).
    pub async fn start(&self, id: &str, settings: &AccountSettings, now_ms: i64) -> Result<Campaign, AdminError> {
        let c = self.get(id).await?;
        if matches!(c.state, State::Scheduled | State::Planning | State::Sending) {
            self.plans.send(&PlanMessage::body(&c)?, 0).await?;
            return Ok(c);
        }
        let to = if c.not_before_ms > now_ms { State::Scheduled } else { State::Planning };
        let started = self
            .store
            .start(id, settings, to, now_ms)
            .await?
            .ok_or_else(|| AdminError::NotADraft { id: id.to_string(), state: c.state })?;
        self.plans.send(&PlanMessage::body(&started)?, 0).await?;
        Ok(started)
    }

    /// Pauses a campaign. One paused for its quiet hours can be paused for good: it then no
    /// longer resumes by itself.
    pub async fn pause(&self, id: &str) -> Result<Campaign, AdminError> {
        let from = [State::Scheduled, State::Planning, State::Sending, State::Paused];
        self.change(id, &from, State::Paused, Some("paused by a person")).await
    }

    pub async fn cancel(&self, id: &str) -> Result<Campaign, AdminError> {
        let from =
            [State::Draft, State::Scheduled, State::Planning, State::Sending, State::Paused, State::NeedsAttention];
        self.change(id, &from, State::Cancelled, Some("cancelled by a person")).await
    }

    /// Resumes a paused campaign (to its schedule, if that is still ahead): held batches are taken
    /// back, and every batch not settled is queued again with the plan message (duplicates are
    /// harmless: a batch is leased and settles once). On a campaign that is sending it does the
    /// same, which brings back batches whose messages went to the dead-letter queue.
    pub async fn resume(&self, id: &str, now_ms: i64) -> Result<Campaign, AdminError> {
        let c = self.get(id).await?;
        if !matches!(c.state, State::Paused | State::Scheduled | State::Planning | State::Sending) {
            return Err(AdminError::CannotResume { id: id.to_string(), state: c.state });
        }
        // The plan message first, delayed past this command: a resume cut short anywhere after
        // it (Ctrl-C, a crash, a throttled call) is finished by the planner, which queues the open
        // batches too (and finds a campaign still paused if it never got that far).
        self.plans.send(&PlanMessage::requeue(&c, Some(0))?, RESUME_SAFETY_NET_SECS).await?;
        let c = match c.state {
            State::Paused => self.change(id, &[State::Paused], resumes_to(&c, now_ms), None).await?,
            _ => c,
        };
        // And one now, so planning goes on at once.
        self.plans.send(&PlanMessage::requeue(&c, Some(0))?, 0).await?;
        let deadline = Instant::now() + RESUME_WITHIN;
        if let Requeued::Stopped { next, .. } =
            requeue(self.store, self.store, self.batches, &c, 0, deadline, now_ms).await?
        {
            tracing::info!(campaign = id, next, "resume: the planner queues the rest of the batches");
        }
        // As it is now: its held batches were taken back.
        self.reread(id).await
    }

    /// A person's decision on the batches whose outcome is unknown (LINE may or may not have
    /// delivered them, and forgot their retry keys): `delivered` counts them sent; otherwise they
    /// count failed and their friends' cap slots and budget are given back.
    pub async fn resolve(&self, id: &str, delivered: bool, now_ms: i64) -> Result<Resolved, AdminError> {
        let c = self.get(id).await?;
        let (mut batches, mut recipients) = (0, 0);
        for (number, _) in self.store.batches_in(&c, &[BatchState::Unknown]).await? {
            let Some(batch) = self.store.batch(&c, number).await? else { continue };
            // (Resolved by someone else at the same time: theirs counts, not this one.)
            if self.store.resolve_unknown(&c, &batch, delivered, now_ms).await? {
                batches += 1;
                recipients += batch.send_list().len() as u64;
            }
        }
        // Failed batches whose slots and budget are still taken: the ones just resolved as not
        // delivered, and any a resolve cut short left behind (nothing else comes back to them).
        for (number, _) in self.store.batches_in(&c, &[BatchState::Failed]).await? {
            let Some(batch) = self.store.batch(&c, number).await? else { continue };
            if batch.slots_to_give_back() {
                give_back(self.store, self.store, &c, &batch, now_ms).await?;
            }
        }
        self.store.done_when_resolved(&c).await?;
        Ok(Resolved { batches, recipients, campaign: self.reread(id).await? })
    }

    async fn change(&self, id: &str, from: &[State], to: State, reason: Option<&str>) -> Result<Campaign, AdminError> {
        let c = self.get(id).await?;
        if !self.store.transition(id, &c.run, from, to, reason).await? {
            return Err(AdminError::CannotGo { id: id.to_string(), state: c.state, to });
        }
        self.reread(id).await
    }

    /// Opts friends out (`on`) or back in, `by` a means (`cli`, `settings`): the friends whose
    /// opt-out changed.
    pub async fn suppress(&self, users: &[String], on: bool, by: &str, now_ms: i64) -> Result<Vec<String>, AdminError> {
        let mut changed = vec![];
        for user in users {
            if self.store.suppress(user, on, by, now_ms).await? {
                changed.push(user.clone());
            }
        }
        Ok(changed)
    }

    /// Brings the opt-outs made by the settings in line with a new version's `suppress:` list
    /// (friends listed `before` and not now are opted back in, unless they were opted out with
    /// `oa suppress add`): what changed, as `+ suppress U…` and `- suppress U…` lines.
    pub async fn sync_settings_opt_outs(
        &self,
        before: &[String],
        now: &[String],
        now_ms: i64,
    ) -> Result<Vec<String>, AdminError> {
        let mut out = vec![];
        for user in self.suppress(now, true, "settings", now_ms).await? {
            out.push(format!("+ suppress {user}"));
        }
        let dropped: Vec<String> = before.iter().filter(|u| !now.contains(u)).cloned().collect();
        for user in self.suppress(&dropped, false, "settings", now_ms).await? {
            out.push(format!("- suppress {user}"));
        }
        Ok(out)
    }

    /// A test push of the campaign's messages to a few named friends (1-20): outside caps and
    /// counters, with a retry key of its own. Returns LINE's request id.
    pub async fn test_push(&self, line: &dyn Multicaster, id: &str, to: &[String]) -> Result<String, AdminError> {
        let c = self.get(id).await?;
        if let Some(bad) = to.iter().find(|u| !crate::shop::is_line_user_id(u)) {
            return Err(AdminError::Invalid(format!("{bad:?} is not a LINE user ID")));
        }
        if to.is_empty() || to.len() > 20 {
            return Err(AdminError::Invalid("give 1-20 friends with --to".into()));
        }
        let to: Vec<&str> = to.iter().map(String::as_str).collect();
        let accepted = line.multicast(&to, &c.messages, &retry_key(), None).await?;
        Ok(accepted.request_id.unwrap_or_default())
    }
}

/// A plan as people name it: its preset's name, or its terms.
pub fn plan_label(plan: &Plan) -> String {
    plan.name.clone().unwrap_or_else(|| format!("{} {} a month, {} included", plan.currency, plan.fee, plan.included))
}

#[cfg(test)]
mod tests;
