//! The campaign's data model: the campaign as stored, its states and counters, the holdout draw,
//! cap periods, the account policy it runs under, and the queue messages.

use std::collections::BTreeMap;

use jiff::Timestamp;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use serde_json::Value;

use super::file::{Cap, Period, BASIS};
use crate::ports::BackendError;
use crate::rules::window::Zone;
use crate::segment::resolve::Cursor;

/// Where a campaign is. `planning` and `sending` overlap: batches go out while planning goes on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum State {
    Draft,
    /// Started, waiting for its schedule.
    Scheduled,
    Planning,
    Sending,
    /// Planning finished and every batch settled.
    Done,
    /// Stopped by a person or by LINE (reason: quota, LINE's words); resume sends the rest.
    Paused,
    Cancelled,
    /// Batches whose outcome is unknown: a person decides.
    NeedsAttention,
}

impl State {
    pub fn name(self) -> &'static str {
        match self {
            State::Draft => "draft",
            State::Scheduled => "scheduled",
            State::Planning => "planning",
            State::Sending => "sending",
            State::Done => "done",
            State::Paused => "paused",
            State::Cancelled => "cancelled",
            State::NeedsAttention => "needsAttention",
        }
    }

    pub fn parse(s: &str) -> Option<State> {
        [
            State::Draft,
            State::Scheduled,
            State::Planning,
            State::Sending,
            State::Done,
            State::Paused,
            State::Cancelled,
            State::NeedsAttention,
        ]
        .into_iter()
        .find(|st| st.name() == s)
    }

    /// Whether batches may go out.
    pub fn sends(self) -> bool {
        matches!(self, State::Planning | State::Sending)
    }

    /// Whether `oa campaign status --wait` stops waiting.
    pub fn is_settled(self) -> bool {
        matches!(self, State::Done | State::Paused | State::Cancelled | State::NeedsAttention)
    }
}

/// Why a friend of the segment was not sent the campaign.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum Skip {
    /// At a frequency cap (or, when sending, another campaign took the last slot first).
    Cap,
    /// Past the campaign's budget.
    Budget,
    /// Opted out (settings `suppress`, `oa suppress add`).
    Suppressed,
    /// Blocked the account (or unfollowed) after the segment's index said otherwise.
    Blocked,
    /// An earlier run of the same campaign id was (or may have been) sent to them: a campaign
    /// recreated after a cancel is not pushed twice (unless created with `--resend`).
    AlreadySent,
}

impl Skip {
    pub const ALL: [Skip; 5] = [Skip::Cap, Skip::Budget, Skip::Suppressed, Skip::Blocked, Skip::AlreadySent];

    pub fn name(self) -> &'static str {
        match self {
            Skip::Cap => "cap",
            Skip::Budget => "budget",
            Skip::Suppressed => "suppressed",
            Skip::Blocked => "blocked",
            Skip::AlreadySent => "alreadySent",
        }
    }
}

/// Skips by reason.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, rename_all = "camelCase")]
pub struct Skips {
    pub cap: u64,
    pub budget: u64,
    pub suppressed: u64,
    pub blocked: u64,
    pub already_sent: u64,
}

impl Skips {
    pub fn add(&mut self, why: Skip, n: u64) {
        match why {
            Skip::Cap => self.cap += n,
            Skip::Budget => self.budget += n,
            Skip::Suppressed => self.suppressed += n,
            Skip::Blocked => self.blocked += n,
            Skip::AlreadySent => self.already_sent += n,
        }
    }

    pub fn get(&self, why: Skip) -> u64 {
        match why {
            Skip::Cap => self.cap,
            Skip::Budget => self.budget,
            Skip::Suppressed => self.suppressed,
            Skip::Blocked => self.blocked,
            Skip::AlreadySent => self.already_sent,
        }
    }

    pub fn total(&self) -> u64 {
        self.cap + self.budget + self.suppressed + self.blocked + self.already_sent
    }
}

/// A campaign's counters. They add up:
/// `segment = holdout + plan_skipped + planned` and
/// `planned = sent + skipped + failed + held + unknown` (`held` counts the recipients of batches
/// kept back by a pause or cancel, and goes down again when they are resumed).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, rename_all = "camelCase")]
pub struct Counters {
    pub segment: u64,
    pub holdout: u64,
    /// Left out while planning.
    pub plan_skipped: Skips,
    pub planned: u64,
    pub sent: u64,
    /// Left out while sending (a cap taken since planning, a new opt-out, a block).
    pub skipped: Skips,
    pub failed: u64,
    pub held: u64,
    pub unknown: u64,
    pub batches: u64,
    /// Batches finished (sent, skipped, failed or unknown), not counting held ones.
    pub settled: u64,
}

impl Counters {
    /// The invariants of the counters, as a list of what does not add up (empty: they do).
    pub fn problems(&self, plan_done: bool) -> Vec<String> {
        let mut out = vec![];
        if plan_done && self.segment != self.holdout + self.plan_skipped.total() + self.planned {
            out.push(format!(
                "segment {} != holdout {} + skipped {} + planned {}",
                self.segment,
                self.holdout,
                self.plan_skipped.total(),
                self.planned
            ));
        }
        let accounted = self.sent + self.skipped.total() + self.failed + self.held + self.unknown;
        if accounted > self.planned {
            out.push(format!("sent + skipped + failed + held + unknown = {accounted} > planned {}", self.planned));
        }
        out
    }

    /// Recipients whose batch has not settled yet.
    pub fn in_flight(&self) -> u64 {
        self.planned.saturating_sub(self.sent + self.skipped.total() + self.failed + self.held + self.unknown)
    }
}

/// The campaign-queue message: plan (or go on planning) this run of the campaign.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PlanMessage {
    pub campaign: String,
    pub run: String,
    /// Queue the run's open batches again from this batch number on (a resume: sent before the
    /// batches are, so a resume cut short is finished by the planner).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub requeue_from: Option<u32>,
}

/// The multicast-queue message: send this batch.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct BatchMessage {
    pub campaign: String,
    pub run: String,
    pub batch: u32,
}

/// The holdout draw: a hash of the run's salt and the user ID, mod 10,000, under the holdout's
/// basis points. Stable for a campaign, independent between campaigns.
pub fn in_holdout(salt: &str, user_id: &str, holdout_bps: u32) -> bool {
    if holdout_bps == 0 {
        return false;
    }
    let digest = Sha256::new().chain_update(salt.as_bytes()).chain_update(b":").chain_update(user_id).finalize();
    let mut first = [0u8; 8];
    first.copy_from_slice(digest.get(..8).unwrap_or(&[0; 8]));
    (u64::from_be_bytes(first) % u64::from(BASIS)) < u64::from(holdout_bps)
}

/// The attribute of a friend's item holding the campaigns pushed to them in `period` at `at`:
/// `cap#m2026-11`, `cap#w2026-48` (ISO week), `cap#d2026-11-30`, in the account's time zone.
pub fn period_attribute(period: Period, at: Timestamp, zone: &Zone) -> String {
    let date = at.to_zoned(zone.tz().clone()).date();
    match period {
        Period::Month => format!("cap#m{:04}-{:02}", date.year(), date.month()),
        Period::Week => {
            let week = date.iso_week_date();
            format!("cap#w{:04}-{:02}", week.year(), week.week())
        }
        Period::Day => format!("cap#d{:04}-{:02}-{:02}", date.year(), date.month(), date.day()),
    }
}

/// How long after a cap period ends its attribute is removed: longer than any two time zones are
/// apart, so no campaign of the account (each with the time zone it started with) still counts
/// it.
pub const PRUNE_AFTER_MS: i64 = 3 * 24 * 3_600_000;

/// The periods of each kind a reservation at `now_ms` removes from a friend's item as it goes:
/// the 7 days, 3 weeks and 2 months before the ones that ended [`PRUNE_AFTER_MS`] ago or later.
/// (A friend pushed again after a longer pause keeps older ones: the store removes those it
/// finds after the update, see [`is_past_period`].)
pub fn past_periods(now_ms: i64, zone: &Zone) -> Vec<String> {
    let base = Timestamp::from_millisecond(now_ms - PRUNE_AFTER_MS).unwrap_or(Timestamp::UNIX_EPOCH);
    let date = base.to_zoned(zone.tz().clone()).date();
    let mut out = vec![];
    for k in 1..=7i64 {
        if let Ok(d) = date.checked_sub(jiff::Span::new().days(k)) {
            out.push(format!("cap#d{:04}-{:02}-{:02}", d.year(), d.month(), d.day()));
        }
    }
    for k in 1..=3i64 {
        if let Ok(d) = date.checked_sub(jiff::Span::new().days(7 * k)) {
            let week = d.iso_week_date();
            out.push(format!("cap#w{:04}-{:02}", week.year(), week.week()));
        }
    }
    let months = i32::from(date.year()) * 12 + i32::from(date.month()) - 1;
    for k in 1..=2 {
        let m = months - k;
        out.push(format!("cap#m{:04}-{:02}", m.div_euclid(12), m.rem_euclid(12) + 1));
    }
    out
}

/// Whether `attribute` is a cap period that ended [`PRUNE_AFTER_MS`] or more before `now_ms`:
/// earlier (in the attribute's own order, which is time's) than the period of its kind then.
pub fn is_past_period(attribute: &str, now_ms: i64, zone: &Zone) -> bool {
    let base = Timestamp::from_millisecond(now_ms - PRUNE_AFTER_MS).unwrap_or(Timestamp::UNIX_EPOCH);
    let period = match attribute.get(..5) {
        Some("cap#m") => Period::Month,
        Some("cap#w") => Period::Week,
        Some("cap#d") => Period::Day,
        _ => return false,
    };
    let then = period_attribute(period, base, zone);
    attribute.len() == then.len() && attribute < then.as_str()
}

/// The caps in force at `at`: each cap's attribute and its most campaigns.
pub fn cap_slots(caps: &[Cap], at: Timestamp, zone: &Zone) -> BTreeMap<String, u32> {
    caps.iter().map(|c| (period_attribute(c.per, at, zone), c.max)).collect()
}

/// The member a campaign run adds to a friend's cap sets: ids are reused, runs are not.
pub fn cap_member(campaign: &str, run: &str) -> String {
    format!("{campaign}~{run}")
}

/// The account settings a campaign runs under, taken from the live settings when it starts (as
/// its caps and time zone are).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, rename_all = "camelCase")]
pub struct Policy {
    /// The fleet's multicast requests a second.
    pub send_rate: u32,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub quiet_hours: Option<crate::rules::window::Hours>,
    /// Least time between two campaign pushes to one friend; 0: none.
    pub min_gap_ms: i64,
    /// Most billable messages a month across campaigns.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub monthly_budget: Option<u64>,
}

impl Default for Policy {
    fn default() -> Self {
        Policy { send_rate: super::file::LINE_MULTICAST_RATE, quiet_hours: None, min_gap_ms: 0, monthly_budget: None }
    }
}

impl Policy {
    pub fn of(settings: &super::file::AccountSettings) -> Self {
        Policy {
            send_rate: settings.send_rate,
            quiet_hours: settings.quiet_hours,
            min_gap_ms: settings.min_gap.map_or(0, |d| d.as_millis() as i64),
            monthly_budget: settings.monthly_budget.map(|b| b.messages),
        }
    }

    /// When the quiet hours `at` falls in end, in the account's zone; None outside them.
    pub fn quiet_until(&self, at_ms: i64, zone: &crate::rules::window::Zone) -> Option<i64> {
        let hours = self.quiet_hours?;
        let at = jiff::Timestamp::from_millisecond(at_ms).ok()?;
        let local = at.to_zoned(zone.tz().clone());
        let time = local.time();
        let inside = if hours.start < hours.end {
            hours.start <= time && time < hours.end
        } else {
            time >= hours.start || time < hours.end
        };
        if !inside {
            return None;
        }
        let mut end = local.date().to_datetime(hours.end).to_zoned(zone.tz().clone()).ok()?;
        if end.timestamp() <= at {
            end = end.tomorrow().ok()?;
        }
        Some(end.timestamp().as_millisecond())
    }
}

/// A campaign as stored.
#[derive(Debug, Clone, PartialEq)]
pub struct Campaign {
    pub id: String,
    pub run: String,
    pub name: String,
    pub segment: String,
    pub messages: Vec<Value>,
    pub holdout_bps: u32,
    pub budget: Option<u64>,
    pub transactional: bool,
    pub not_before_ms: i64,
    pub state: State,
    pub reason: Option<String>,
    pub source: String,
    pub created_at_ms: i64,
    pub started_at_ms: Option<i64>,
    pub first_sent_at_ms: Option<i64>,
    pub last_sent_at_ms: Option<i64>,
    /// The account's caps and time zone when the campaign started.
    pub caps: Vec<Cap>,
    pub timezone: String,
    pub plan_page: u32,
    pub cursor: Option<Cursor>,
    pub plan_done: bool,
    pub last_batch: Option<u32>,
    pub counters: Counters,
    /// The last preview's JSON, to compare with what was planned and sent.
    pub preview: Option<Value>,
    /// Recipients per multicast request (1-500).
    pub batch_size: u32,
    /// LINE's `customAggregationUnits` name, if any.
    pub aggregation_unit: Option<String>,
    /// The account's rate, quiet hours, gap and monthly budget when the campaign started.
    pub policy: Policy,
    /// A campaign paused for quiet hours resumes by itself at this time.
    pub resume_at_ms: Option<i64>,
    /// Created with `--resend`: friends sent an earlier run of the same id get this one too.
    pub resend: bool,
}

impl Campaign {
    pub fn cap_member(&self) -> String {
        cap_member(&self.id, &self.run)
    }

    /// What committing `page` of the plan (with the cursor `next` after it) changes: the same
    /// for the stored campaign and for a planner's own copy.
    pub fn commit(&mut self, page: &PlannedPage, next: Option<&Cursor>) {
        let k = &mut self.counters;
        k.segment += page.segment;
        k.holdout += page.holdout.len() as u64;
        for why in Skip::ALL {
            k.plan_skipped.add(why, page.skipped.get(why));
        }
        k.planned += page.to.len() as u64;
        if !page.to.is_empty() {
            k.batches += 1;
            self.last_batch = Some(self.plan_page);
            self.state = State::Sending;
        }
        self.plan_page += 1;
        self.cursor = next.cloned();
        self.plan_done = next.is_none();
    }
}

/// What a page of the plan adds.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct PlannedPage {
    pub segment: u64,
    pub to: Vec<String>,
    pub holdout: Vec<String>,
    pub skipped: Skips,
}

/// A create refused because the id names a campaign that is not finished.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Created {
    Created { run: String },
    InUse { state: State },
}

/// A random id: a run, a lease owner.
pub fn uuid_simple() -> String {
    uuid::Uuid::new_v4().simple().to_string().chars().take(12).collect()
}

impl PlanMessage {
    /// The campaign-queue message that plans (or goes on planning) `c`'s run.
    pub fn body(c: &Campaign) -> Result<String, BackendError> {
        Self::requeue(c, None)
    }

    /// The plan message that also queues the run's open batches from batch `from` on.
    pub fn requeue(c: &Campaign, from: Option<u32>) -> Result<String, BackendError> {
        serde_json::to_string(&PlanMessage { campaign: c.id.clone(), run: c.run.clone(), requeue_from: from })
            .map_err(|e| BackendError::Queue { operation: "SendMessage", message: e.to_string() })
    }
}

impl BatchMessage {
    /// The multicast-queue message that sends batch `batch` of `c`'s run.
    pub fn body(c: &Campaign, batch: u32) -> Result<String, BackendError> {
        serde_json::to_string(&BatchMessage { campaign: c.id.clone(), run: c.run.clone(), batch })
            .map_err(|e| BackendError::Queue { operation: "SendMessage", message: e.to_string() })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_holdout_is_stable_and_near_its_share() {
        let users: Vec<String> = (0..20_000).map(|i| format!("U{i:032x}")).collect();
        let held = users.iter().filter(|u| in_holdout("salt", u, 1_000)).count();
        assert!((1_800..2_200).contains(&held), "{held} of 20,000 at 10%");
        let again = users.iter().filter(|u| in_holdout("salt", u, 1_000)).count();
        assert_eq!(held, again);
        let other = users.iter().filter(|u| in_holdout("salt", u, 1_000) && in_holdout("other", u, 1_000)).count();
        assert!(other < 400, "draws of two campaigns are independent: {other} in both");
        assert!(!users.iter().any(|u| in_holdout("salt", u, 0)));
    }

    #[test]
    fn cap_periods_are_calendar_periods_in_the_accounts_zone() {
        let zone = Zone::parse("Asia/Taipei").unwrap();
        // 2026-11-30T17:00Z is 01:00 on 1 December in Taipei.
        let at: Timestamp = "2026-11-30T17:00:00Z".parse().unwrap();
        assert_eq!(period_attribute(Period::Month, at, &zone), "cap#m2026-12");
        assert_eq!(period_attribute(Period::Day, at, &zone), "cap#d2026-12-01");
        assert_eq!(period_attribute(Period::Week, at, &zone), "cap#w2026-49");
        assert_eq!(period_attribute(Period::Month, at, &Zone::default()), "cap#m2026-11");
    }

    #[test]
    fn past_periods_are_the_ones_that_ended_three_days_before() {
        // 2027-01-05T12:00Z: three days before is 2027-01-02 (ISO week 2026-53).
        let now = 1_799_150_400_000;
        let zone = Zone::default();
        let past = past_periods(now, &zone);
        assert_eq!(past.len(), 12);
        assert!(past.contains(&"cap#d2027-01-01".to_string()));
        assert!(past.contains(&"cap#d2026-12-26".to_string()));
        assert!(!past.contains(&"cap#d2027-01-02".to_string()));
        assert!(past.contains(&"cap#w2026-52".to_string()));
        assert!(!past.contains(&"cap#w2026-53".to_string()));
        assert!(past.contains(&"cap#m2026-12".to_string()) && past.contains(&"cap#m2026-11".to_string()));
        assert!(past.iter().all(|a| is_past_period(a, now, &zone)));
        for current in ["cap#d2027-01-05", "cap#d2027-01-02", "cap#w2027-01", "cap#m2027-01", "sent#x", "cap#m"] {
            assert!(!is_past_period(current, now, &zone), "{current}");
        }
        assert!(is_past_period("cap#d2025-03-01", now, &zone));
        assert!(is_past_period("cap#w2025-09", now, &zone));
    }
}
