//! `oa settings`, `oa suppress` and `oa campaign`: account settings as code, opt-outs, and
//! campaigns from file to delivery (create, preview, start, status, pause, resume, cancel, test).

use std::path::Path;
use std::sync::Arc;

use serde_json::{json, Value};
use shared::adapters::dynamodb::rules::{Publish, RulesStore};
use shared::adapters::line::LineClient;
use shared::campaign::admin::{plan_label, Admin, Previewed, Resolved};
use shared::campaign::file::{AccountSettings, CampaignFile};
use shared::campaign::model::{Campaign, Counters, Skip};
use shared::campaign::ports::{CampaignAdmin, Pacer};
use shared::ports::WorkQueue;
use shared::segment::resolve::SegmentIndex;

use crate::rules::located;

type Error = Box<dyn std::error::Error>;

/// What the campaign commands talk to: the admin port and the queues (the use cases are
/// [`shared::campaign::admin`]), the settings, the segment index and LINE.
pub struct Campaigns {
    pub store: Arc<dyn CampaignAdmin>,
    pub settings: RulesStore,
    pub index: Box<dyn SegmentIndex>,
    pub line: LineClient,
    /// campaign-queue and multicast-queue.
    pub plans: Box<dyn WorkQueue>,
    pub batches: Box<dyn WorkQueue>,
    /// The fleet's send schedule, which holds the account's `sendRate`.
    pub pacer: Box<dyn Pacer>,
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
    /// The people's commands over this wiring.
    pub fn admin(&self) -> Admin<'_> {
        Admin { store: self.store.as_ref(), plans: self.plans.as_ref(), batches: self.batches.as_ref() }
    }

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
        // Running campaigns slow down (or speed up) to it too.
        self.pacer.set_rate(settings.send_rate, version).await?;
        let before: Vec<String> = live.map(|(_, s)| s.suppress).unwrap_or_default();
        for line in self.admin().sync_settings_opt_outs(&before, &settings.suppress, now_ms).await? {
            out.push_str(&format!("  {line}\n"));
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
    pub async fn create(&self, path: &Path, resend: bool, now_ms: i64) -> Result<Campaign, Error> {
        let (text, file) = load_campaign(path)?;
        self.line
            .validate_multicast(&file.messages.0)
            .await
            .map_err(|e| format!("{}: LINE's validator refused the messages: {e}", path.display()))?;
        Ok(self.admin().create(&file, &text, resend, now_ms).await?)
    }

    /// The preview of a file or a created campaign: who gets it, who not and why, and the price.
    pub async fn preview(&self, file_or_id: &str, now_ms: i64) -> Result<Value, Error> {
        let settings = self.settings_or_default().await?;
        let path = Path::new(file_or_id);
        let file;
        let of = if path.exists() {
            file = load_campaign(path)?.1;
            Previewed::File(&file)
        } else {
            if self.store.get(file_or_id).await?.is_none() {
                return Err(format!("no campaign {file_or_id} (and no such file)").into());
            }
            Previewed::Stored(file_or_id)
        };
        Ok(self.admin().preview(of, &settings, self.index.as_ref(), &self.line, now_ms).await?)
    }

    /// Starts a draft under the live settings and queues its planning (see
    /// [`Admin::start`]).
    pub async fn start(&self, id: &str, now_ms: i64) -> Result<Campaign, Error> {
        let settings = self.settings_or_default().await?;
        Ok(self.admin().start(id, &settings, now_ms).await?)
    }

    pub async fn pause(&self, id: &str) -> Result<Campaign, Error> {
        Ok(self.admin().pause(id).await?)
    }

    pub async fn cancel(&self, id: &str) -> Result<Campaign, Error> {
        Ok(self.admin().cancel(id).await?)
    }

    /// See [`Admin::resume`].
    pub async fn resume(&self, id: &str, now_ms: i64) -> Result<Campaign, Error> {
        Ok(self.admin().resume(id, now_ms).await?)
    }

    /// See [`Admin::resolve`]: how many batches and recipients were resolved, and the campaign.
    pub async fn resolve(&self, id: &str, delivered: bool, now_ms: i64) -> Result<(usize, u64, Campaign), Error> {
        let Resolved { batches, recipients, campaign } = self.admin().resolve(id, delivered, now_ms).await?;
        Ok((batches, recipients, campaign))
    }

    /// A test push of the campaign's messages to a few named friends: outside caps and counters.
    pub async fn test(&self, id: &str, to: &[String]) -> Result<String, Error> {
        let request = self.admin().test_push(&self.line, id, to).await?;
        Ok(format!("test push of {id} to {} friends (request {request})", to.len()))
    }
}

/// The preview as people read it.
pub fn format_preview(p: &Value) -> String {
    let n = |k: &str| p.pointer(k).and_then(Value::as_u64).unwrap_or(0);
    let mut out = format!("campaign {}\n", p["campaign"].as_str().unwrap_or_default());
    out.push_str(&format!("  segment      {}\n", n("/segment")));
    for why in ["holdout", "suppressed", "blocked", "cap", "budget", "alreadySent"] {
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
            (
                "alreadySent",
                n("/skipped/alreadySent") as i64,
                (k.plan_skipped.already_sent + k.skipped.already_sent) as i64,
            ),
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
