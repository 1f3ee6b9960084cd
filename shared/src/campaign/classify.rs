//! Who of a page of the segment gets a campaign: opted out, blocked, at a cap, held out, past
//! the budget, or planned. The planner and the preview classify with the same code, so an
//! unchanged population plans exactly as previewed.

use std::collections::HashMap;

use super::caps::{Demand, FriendCaps};
use super::model::{in_holdout, Campaign, PlannedPage, Skip};
use crate::rules::window::Zone;

/// How a campaign decides who of a page gets it.
#[derive(Debug, Clone)]
pub struct Classifier {
    /// What the campaign asks of each friend's caps (its member, the slots, the gap).
    pub demand: Demand,
    /// Salt of the holdout draw: the campaign id, so a preview of the file draws as the plan will.
    pub salt: String,
    pub holdout_bps: u32,
    pub budget: Option<u64>,
    /// When the friends' caps are judged.
    pub now_ms: i64,
}

impl Classifier {
    pub fn new(campaign_id: &str, demand: Demand, holdout_bps: u32, budget: Option<u64>, now_ms: i64) -> Self {
        Classifier { demand, salt: campaign_id.to_string(), holdout_bps, budget, now_ms }
    }

    /// The classifier of a stored campaign at `now_ms`.
    pub fn of(c: &Campaign, now_ms: i64) -> Self {
        let zone = Zone::parse(&c.timezone).unwrap_or_default();
        let demand = Demand::new(c.cap_member(), &c.caps, &zone, c.transactional, c.policy.min_gap_ms, now_ms)
            .once_per_campaign(&c.id, c.resend);
        Classifier::new(&c.id, demand, c.holdout_bps, c.budget, now_ms)
    }

    pub fn cap_attributes(&self) -> Vec<String> {
        self.demand.attributes()
    }

    /// Sorts one page of the segment, in order: opted out, blocked, at a cap, held out, past the
    /// budget (`planned_before` recipients were planned before this page), planned.
    pub fn classify(
        &self,
        users: &[String],
        friends: &HashMap<String, FriendCaps>,
        planned_before: u64,
    ) -> PlannedPage {
        let mut page = PlannedPage { segment: users.len() as u64, ..PlannedPage::default() };
        let absent = FriendCaps::default();
        for user in users {
            let friend = friends.get(user).unwrap_or(&absent);
            if let Some(why) = friend.refusal(&self.demand, self.now_ms) {
                page.skipped.add(why, 1);
            } else if in_holdout(&self.salt, user, self.holdout_bps) {
                page.holdout.push(user.clone());
            } else if self.budget.is_some_and(|b| planned_before + page.to.len() as u64 >= b) {
                page.skipped.add(Skip::Budget, 1);
            } else {
                page.to.push(user.clone());
            }
        }
        page
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use jiff::Timestamp;

    use super::*;
    use crate::campaign::file::{Cap, Period};

    fn friend(following: bool, suppressed: bool, month: &[&str]) -> FriendCaps {
        FriendCaps {
            following,
            suppressed,
            sets: BTreeMap::from([("cap#m2026-11".to_string(), month.iter().map(|m| m.to_string()).collect())]),
            last_push: None,
            sent: BTreeMap::new(),
        }
    }

    #[test]
    fn a_page_is_sorted_by_reason_in_order() {
        let zone = Zone::parse("UTC").unwrap();
        let now = Timestamp::from_second(1_795_000_000).unwrap().as_millisecond(); // 2026-11
        let caps = [Cap { per: Period::Month, max: 1 }];
        let c = Classifier::new("c", Demand::new("c~r".into(), &caps, &zone, false, 0, now), 0, Some(2), now);
        assert_eq!(c.cap_attributes(), vec!["cap#m2026-11".to_string()]);
        let users: Vec<String> = ["a", "b", "c", "d", "e", "f", "g", "h", "i"].map(String::from).to_vec();
        let sent_by = |run: &str| FriendCaps {
            sent: BTreeMap::from([("c".to_string(), format!("c~{run}~1"))]),
            ..friend(true, false, &[])
        };
        let friends = HashMap::from([
            ("a".to_string(), friend(true, true, &[])),
            ("b".to_string(), friend(false, false, &[])),
            ("c".to_string(), friend(true, false, &["other~x"])),
            ("d".to_string(), friend(true, false, &["c~r"])), // its own run: a retry passes
            ("e".to_string(), friend(true, false, &[])),
            ("f".to_string(), friend(true, false, &[])),
            ("h".to_string(), sent_by("earlier")), // sent an earlier run of campaign c
            ("i".to_string(), sent_by("r")),       // reserved by this run: a retry passes
        ]);
        let page = c.classify(&users, &friends, 0);
        assert_eq!(page.skipped.already_sent, 0, "a demand without a campaign id checks no earlier run");
        let c = Classifier { demand: c.demand.clone().once_per_campaign("c", false), ..c };
        let page = c.classify(&users, &friends, 0);
        assert_eq!(page.to, vec!["d".to_string(), "e".to_string()]);
        assert_eq!(
            (page.skipped.suppressed, page.skipped.blocked, page.skipped.cap, page.skipped.budget),
            (1, 2, 1, 2),
            "g is unknown to the users table: not a following friend"
        );
        assert_eq!(page.skipped.already_sent, 1, "h was sent an earlier run");
        let resend = Classifier { demand: c.demand.clone().once_per_campaign("c", true), budget: None, ..c.clone() };
        assert_eq!(resend.classify(&users, &friends, 0).to.len(), 5, "--resend: h gets this run too");
        // Transactional campaigns ignore caps, not opt-outs.
        let t = Classifier::new("c", Demand::new("c~r".into(), &caps, &zone, true, 0, now), 0, None, now);
        let page = t.classify(&users, &friends, 0);
        assert_eq!(page.to.len(), 6);
        assert_eq!(page.skipped.suppressed, 1);
    }
}
