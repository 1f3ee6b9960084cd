//! `oa settings`, `oa suppress` and `oa campaign`: account settings as code, opt-outs, and
//! campaigns from file to delivery (create, preview, start, status, pause, resume, cancel, test).

use std::path::Path;

use serde_json::{json, Value};
use shared::adapters::tags::DynamoTags;
use shared::campaign::file::{AccountSettings, CampaignFile};
use shared::campaign::model::{Counters, Skip, State};
use shared::campaign::plan::{count, plan_body, Classifier};
use shared::campaign::ports::{CampaignRepo, CapStore};
use shared::campaign::price::Plan;
use shared::campaign::resume::{requeue, resumes_to};
use shared::campaign::store::{retry_key, BatchState, Campaign, CampaignStore, Created, Demand};
use shared::line::client::LineClient;
use shared::ports::WorkQueue;
use shared::rules::store::{Publish, RulesStore};

use crate::rules::located;

type Error = Box<dyn std::error::Error>;

/// What the campaign commands talk to.
pub struct Campaigns {
    pub store: CampaignStore,
    pub settings: RulesStore,
    pub index: DynamoTags,
    pub line: LineClient,
    /// campaign-queue and multicast-queue.
    pub plans: Box<dyn WorkQueue>,
    pub batches: Box<dyn WorkQueue>,
}

/// Reads and validates a campaign file; errors read `FILE:LINE:COLUMN: message`.
pub fn load_campaign(path: &Path) -> Result<(String, CampaignFile), String> {
    let text = std::fs::read_to_string(path).map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    let file = CampaignFile::parse(&text).map_err(|e| located(path, &e))?;
    Ok((text, file))
}

pub fn load_settings_file(path: &Path) -> Result<(String, AccountSettings), String> {
    let text = std::fs::read_to_string(path).map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    let settings = AccountSettings::parse(&text).map_err(|e| located(path, &e))?;
    Ok((text, settings))
}

/// The live account settings.
pub async fn live_settings(store: &RulesStore) -> Result<Option<(u64, AccountSettings)>, Error> {
    match store.live().await? {
        None => Ok(None),
        Some(p) => Ok(Some((p.version, AccountSettings::parse(&p.source).map_err(|e| e.to_string())?))),
    }
}

impl Campaigns {
    async fn settings_or_default(&self) -> Result<AccountSettings, Error> {
        Ok(live_settings(&self.settings).await?.map(|(_, s)| s).ok_or(
            "no account settings applied yet: oa settings apply examples/account.yaml (time zone, caps, plan)",
        )?)
    }

    /// Publishes the settings as a new version and brings opt-outs in line with `suppress:`
    /// (friends listed by an earlier version and not by this one are opted back in, unless they
    /// were opted out with `oa suppress add`).
    pub async fn apply_settings(&self, path: &Path, now_ms: i64) -> Result<String, Error> {
        let (text, settings) = load_settings_file(path)?;
        let live = live_settings(&self.settings).await?;
        let mut out = String::new();
        let version = match self.settings.publish(&text, live.as_ref().map(|(v, _)| *v), now_ms).await? {
            Publish::Published { version } => version,
            Publish::Conflict => return Err("someone applied settings at the same time: run it again".into()),
        };
        let before: Vec<String> = live.map(|(_, s)| s.suppress).unwrap_or_default();
        for user in &settings.suppress {
            if self.store.suppress(user, true, "settings", now_ms).await? {
                out.push_str(&format!("  + suppress {user}\n"));
            }
        }
        for user in before.iter().filter(|u| !settings.suppress.contains(u)) {
            if self.store.suppress(user, false, "settings", now_ms).await? {
                out.push_str(&format!("  - suppress {user}\n"));
            }
        }
        let plan = settings.plan.resolve()?;
        out.push_str(&format!(
            "published settings version {version}: time zone {}, caps [{}], plan {}\n",
            settings.timezone.name(),
            settings
                .caps
                .iter()
                .map(|c| format!("{} per {:?}", c.max, c.per).to_lowercase())
                .collect::<Vec<_>>()
                .join(", "),
            plan_label(&plan)
        ));
        Ok(out)
    }

    /// Creates (or re-creates, after a cancel or once done) a campaign from its file, after LINE's
    /// own validator accepted its messages.
    pub async fn create(&self, path: &Path, now_ms: i64) -> Result<Campaign, Error> {
        let (text, file) = load_campaign(path)?;
        self.line
            .validate_multicast(&file.messages.0)
            .await
            .map_err(|e| format!("{}: LINE's validator refused the messages: {e}", path.display()))?;
        match self.store.create(&file, &text, now_ms).await? {
            Created::Created { .. } => {}
            Created::InUse { state } => {
                return Err(format!(
                    "campaign {} exists and is {}: cancel it first, or use another id",
                    file.id,
                    state.name()
                )
                .into())
            }
        }
        Ok(self.store.get(&file.id).await?.ok_or("the campaign vanished")?)
    }

    /// The preview of a file or a created campaign: who gets it, who not and why, and the price.
    pub async fn preview(&self, file_or_id: &str, now_ms: i64) -> Result<Value, Error> {
        let settings = self.settings_or_default().await?;
        let path = Path::new(file_or_id);
        let (id, member, segment, transactional, holdout, budget, batch_size, stored) = if path.exists() {
            let (_, f) = load_campaign(path)?;
            let member = format!("{}~preview", f.id);
            let budget = f.budget.map(|b| b.messages);
            (f.id.clone(), member, f.segment.clone(), f.transactional, f.holdout, budget, f.batch_size, false)
        } else {
            let c = self
                .store
                .get(file_or_id)
                .await?
                .ok_or_else(|| format!("no campaign {file_or_id} (and no such file)"))?;
            let member = c.cap_member();
            (c.id.clone(), member, c.segment.clone(), c.transactional, c.holdout_bps, c.budget, c.batch_size, true)
        };
        let expr = shared::segment::Expr::parse(&segment).map_err(|e| e.to_string())?;
        let gap = settings.min_gap.map_or(0, |g| g.as_millis() as i64);
        let demand = Demand::new(member, &settings.caps, &settings.timezone, transactional, gap, now_ms);
        let classifier = Classifier::new(&id, demand, holdout, budget, now_ms);
        let counted = count(&self.store, &self.index, &expr, &classifier, batch_size, now_ms).await?;
        let month = self.line.month().await?;
        let plan = settings.plan.resolve()?;
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

    /// Starts a draft: takes the account's caps and time zone now, and queues its planning. A
    /// campaign already started gets its plan message again (planning goes on from its
    /// checkpoint, so a start whose message was lost can simply be repeated).
    pub async fn start(&self, id: &str, now_ms: i64) -> Result<Campaign, Error> {
        let settings = self.settings_or_default().await?;
        let c = self.store.get(id).await?.ok_or_else(|| format!("no campaign {id}"))?;
        if matches!(c.state, State::Scheduled | State::Planning | State::Sending) {
            self.plans.send(&plan_body(&c)?, 0).await?;
            return Ok(c);
        }
        let to = if c.not_before_ms > now_ms { State::Scheduled } else { State::Planning };
        let started = self
            .store
            .start(id, &settings, to, now_ms)
            .await?
            .ok_or_else(|| format!("campaign {id} is {}, not a draft", c.state.name()))?;
        self.plans.send(&plan_body(&started)?, 0).await?;
        Ok(started)
    }

    pub async fn pause(&self, id: &str) -> Result<Campaign, Error> {
        // A campaign paused for its quiet hours can be paused for good: it then no longer resumes
        // by itself.
        let from = [State::Scheduled, State::Planning, State::Sending, State::Paused];
        self.change(id, &from, State::Paused, Some("paused by a person")).await
    }

    pub async fn cancel(&self, id: &str) -> Result<Campaign, Error> {
        self.change(
            id,
            &[State::Draft, State::Scheduled, State::Planning, State::Sending, State::Paused, State::NeedsAttention],
            State::Cancelled,
            Some("cancelled by a person"),
        )
        .await
    }

    /// Resumes a paused campaign (to its schedule, if that is still ahead): held batches are taken
    /// back, and every batch not settled is queued again with the plan message (duplicates are
    /// harmless: a batch is leased and settles once). On a campaign that is sending it does the
    /// same, which brings back batches whose messages went to the dead-letter queue.
    pub async fn resume(&self, id: &str, now_ms: i64) -> Result<Campaign, Error> {
        let c = self.store.get(id).await?.ok_or_else(|| format!("no campaign {id}"))?;
        let c = match c.state {
            State::Paused => self.change(id, &[State::Paused], resumes_to(&c, now_ms), None).await?,
            State::Scheduled | State::Planning | State::Sending => c,
            other => {
                return Err(format!("campaign {id} is {}: only a paused or sending one resumes", other.name()).into())
            }
        };
        requeue(&self.store, &self.store, self.batches.as_ref(), Some(self.plans.as_ref()), &c).await?;
        Ok(c)
    }

    /// A person's decision on the batches whose outcome is unknown (LINE may or may not have
    /// delivered them, and forgot their retry keys): `delivered` counts them sent; otherwise they
    /// count failed and their friends' cap slots are given back. Returns how many batches and
    /// recipients were resolved.
    pub async fn resolve(&self, id: &str, delivered: bool) -> Result<(usize, u64, Campaign), Error> {
        let c = self.store.get(id).await?.ok_or_else(|| format!("no campaign {id}"))?;
        let mut recipients = 0;
        let unknown = self.store.batches_in(&c, &[BatchState::Unknown]).await?;
        for (number, _) in &unknown {
            let Some(batch) = self.store.batch(&c, *number).await? else { continue };
            if self.store.resolve_unknown(&c, &batch, delivered).await? {
                recipients += batch.send_list().len() as u64;
            }
        }
        // Failed batches whose slots and budget are still taken: the ones just resolved as not
        // delivered, and any a resolve cut short left behind (nothing else comes back to them).
        let demand = Classifier::of(&c, 0).demand;
        for (number, _) in self.store.batches_in(&c, &[BatchState::Failed]).await? {
            let Some(batch) = self.store.batch(&c, number).await? else { continue };
            if !batch.slots_to_give_back() {
                continue;
            }
            for user in batch.send_list() {
                self.store.release(user, &demand, &batch.cap_attrs).await?;
            }
            self.store.return_budget(&c, &batch).await?;
            self.store.clear_cap_attrs(&c, number).await?;
        }
        self.store.done_when_resolved(&c).await?;
        Ok((unknown.len(), recipients, self.store.get(id).await?.ok_or("the campaign vanished")?))
    }

    async fn change(&self, id: &str, from: &[State], to: State, reason: Option<&str>) -> Result<Campaign, Error> {
        let c = self.store.get(id).await?.ok_or_else(|| format!("no campaign {id}"))?;
        if !self.store.transition(id, &c.run, from, to, reason).await? {
            return Err(format!("campaign {id} is {}: cannot go to {}", c.state.name(), to.name()).into());
        }
        Ok(self.store.get(id).await?.ok_or("the campaign vanished")?)
    }

    /// A test push of the campaign's messages to a few named friends: outside caps and counters.
    pub async fn test(&self, id: &str, to: &[String]) -> Result<String, Error> {
        let c = self.store.get(id).await?.ok_or_else(|| format!("no campaign {id}"))?;
        if let Some(bad) = to.iter().find(|u| !shared::shop::is_line_user_id(u)) {
            return Err(format!("{bad:?} is not a LINE user ID").into());
        }
        if to.is_empty() || to.len() > 20 {
            return Err("give 1-20 friends with --to".into());
        }
        let to: Vec<&str> = to.iter().map(String::as_str).collect();
        let accepted = self.line.multicast(&to, &c.messages, &retry_key(), None).await?;
        Ok(format!("test push of {id} to {} friends (request {})", to.len(), accepted.request_id.unwrap_or_default()))
    }
}

pub fn plan_label(plan: &Plan) -> String {
    plan.name.clone().unwrap_or_else(|| format!("{} {} a month, {} included", plan.currency, plan.fee, plan.included))
}

/// The preview as people read it.
pub fn format_preview(p: &Value) -> String {
    let n = |k: &str| p.pointer(k).and_then(Value::as_u64).unwrap_or(0);
    let mut out = format!("campaign {}\n", p["campaign"].as_str().unwrap_or_default());
    out.push_str(&format!("  segment      {}\n", n("/segment")));
    for why in ["holdout", "suppressed", "blocked", "cap", "budget"] {
        out.push_str(&format!("  - {why:<10} {}\n", n(&format!("/skipped/{why}"))));
    }
    out.push_str(&format!(
        "  recipients   {} = {} billable messages in {} batches\n",
        n("/recipients"),
        n("/billable"),
        n("/batches")
    ));
    let currency = p.pointer("/price/currency").and_then(Value::as_str).unwrap_or_default();
    let quota = p.pointer("/month/quota").and_then(Value::as_u64).map_or("no limit".into(), |q| q.to_string());
    out.push_str(&format!(
        "  this month   {} sent of {} (LINE's quota); plan {}\n",
        n("/month/used"),
        quota,
        p["plan"].as_str().unwrap_or_default()
    ));
    out.push_str(&format!(
        "  price        {} inside the plan's included messages, {} extra costing {currency} {}\n",
        n("/price/included"),
        n("/price/extra"),
        p.pointer("/price/cost").and_then(Value::as_f64).unwrap_or(0.0)
    ));
    match p.pointer("/price/stopsAfter").and_then(Value::as_u64) {
        Some(k) => out.push_str(&format!(
            "  WARNING      LINE's monthly limit would stop it after {k} of {} recipients\n",
            n("/recipients")
        )),
        None => out.push_str("  limit        the monthly limit does not stop it\n"),
    }
    out
}

/// `oa campaign status --json`.
pub fn status_json(c: &Campaign) -> Value {
    let k = &c.counters;
    json!({
        "id": c.id,
        "run": c.run,
        "state": c.state.name(),
        "reason": c.reason,
        "segment": k.segment,
        "holdout": k.holdout,
        "planSkipped": k.plan_skipped,
        "planned": k.planned,
        "sent": k.sent,
        "skipped": k.skipped.total(),
        "skippedBy": k.skipped,
        "failed": k.failed,
        "held": k.held,
        "unknown": k.unknown,
        "inFlight": k.in_flight(),
        "batches": k.batches,
        "settledBatches": k.settled,
        "planDone": c.plan_done,
        "billable": k.sent,
        "problems": k.problems(c.plan_done),
    })
}

/// One status line: a bar of sent of planned, the rate, the ETA and the billable messages.
pub fn status_line(c: &Campaign) -> String {
    let k: &Counters = &c.counters;
    let done = k.sent + k.skipped.total() + k.failed + k.unknown;
    let width = 30usize;
    let filled = (done * width as u64).checked_div(k.planned).unwrap_or(0).min(width as u64) as usize;
    let rate = match (c.first_sent_at_ms, c.last_sent_at_ms) {
        (Some(a), Some(b)) if b > a => k.sent as f64 * 1000.0 / (b - a) as f64,
        _ => 0.0,
    };
    let eta = if rate > 0.0 { format!("{:.0} s", k.in_flight() as f64 / rate) } else { "-".into() };
    // The price so far, on the month and plan the last preview saw.
    let price = c
        .preview
        .as_ref()
        .and_then(|p| {
            let plan: shared::campaign::price::Plan = serde_json::from_value(p.get("planTerms")?.clone()).ok()?;
            let month = shared::campaign::price::Month {
                quota: p.pointer("/month/quota").and_then(Value::as_u64),
                used: p.pointer("/month/used").and_then(Value::as_u64).unwrap_or(0),
            };
            let q = plan.quote(month, k.sent);
            Some(format!(" ({} included, {} extra: {} {:.2})", q.included, q.extra, q.currency, q.cost))
        })
        .unwrap_or_default();
    format!(
        "{} [{}{}] {}/{} sent{}{}{} · {:.0}/s · ETA {eta} · billable {}{price}{}",
        c.state.name(),
        "#".repeat(filled),
        " ".repeat(width - filled),
        k.sent,
        k.planned,
        if k.skipped.total() > 0 { format!(", {} skipped", k.skipped.total()) } else { String::new() },
        if k.failed > 0 { format!(", {} failed", k.failed) } else { String::new() },
        if k.held > 0 { format!(", {} held", k.held) } else { String::new() },
        rate,
        k.sent,
        c.reason.as_deref().map(|r| format!(" · {r}")).unwrap_or_default(),
    )
}

/// `oa campaign show`: the campaign, its counters, and what changed since the last preview.
pub fn format_show(c: &Campaign) -> String {
    let k = &c.counters;
    let mut out = format!(
        "campaign {} ({}) run {}\n  state      {}{}\n  segment    {}\n  plan       segment {} = holdout {} + skipped {} + planned {}{}\n  send       planned {} = sent {} + skipped {} + failed {} + held {} + unknown {}\n",
        c.id,
        c.name,
        c.run,
        c.state.name(),
        c.reason.as_deref().map(|r| format!(" ({r})")).unwrap_or_default(),
        c.segment,
        k.segment,
        k.holdout,
        k.plan_skipped.total(),
        k.planned,
        if c.plan_done { "" } else { " (planning)" },
        k.planned,
        k.sent,
        k.skipped.total(),
        k.failed,
        k.held,
        k.unknown,
    );
    for why in Skip::ALL {
        let (plan, send) = (k.plan_skipped.get(why), k.skipped.get(why));
        if plan + send > 0 {
            out.push_str(&format!("  skipped    {:<10} {plan} when planned, {send} when sent\n", why.name()));
        }
    }
    if let Some(p) = &c.preview {
        let n = |key: &str| p.pointer(key).and_then(Value::as_u64).unwrap_or(0);
        out.push_str(&format!(
            "  preview    segment {}, recipients {} (billable now: {} sent{})\n",
            n("/segment"),
            n("/recipients"),
            k.sent,
            if n("/recipients") == k.sent { ", as previewed" } else { "" }
        ));
        let diffs: Vec<String> = [
            ("segment", n("/segment") as i64, k.segment as i64),
            ("holdout", n("/skipped/holdout") as i64, k.holdout as i64),
            ("cap", n("/skipped/cap") as i64, (k.plan_skipped.cap + k.skipped.cap) as i64),
            ("suppressed", n("/skipped/suppressed") as i64, (k.plan_skipped.suppressed + k.skipped.suppressed) as i64),
            ("blocked", n("/skipped/blocked") as i64, (k.plan_skipped.blocked + k.skipped.blocked) as i64),
            ("budget", n("/skipped/budget") as i64, k.plan_skipped.budget as i64),
        ]
        .into_iter()
        .filter(|(_, a, b)| a != b)
        .map(|(what, a, b)| format!("{what} {a} -> {b}"))
        .collect();
        if !diffs.is_empty() {
            out.push_str(&format!("  changed    since the preview: {}\n", diffs.join(", ")));
        }
    }
    for problem in k.problems(c.plan_done) {
        out.push_str(&format!("  PROBLEM    {problem}\n"));
    }
    out
}
