//! `/__sim/`: what tests and people use to look inside and steer the simulated platform.

use std::collections::BTreeMap;
use std::sync::Arc;

use axum::extract::{Path, Query, State as AxumState};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post, put};
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::{json, Value};

use crate::sender::{RedeliverRequest, SendRequest};
use crate::sim::Sim;
use crate::state::{Api, Faults, Friend, Settings};

pub fn routes() -> Router<Arc<Sim>> {
    Router::new()
        .route("/__sim/deliveries", get(all_deliveries))
        .route("/__sim/deliveries/{to}", get(deliveries))
        .route("/__sim/requests", get(requests))
        .route("/__sim/counters", get(counters))
        .route("/__sim/config", get(config).put(set_config))
        .route("/__sim/faults", get(faults).delete(clear_faults))
        .route("/__sim/faults/{api}", put(set_faults))
        .route("/__sim/friends", post(add_friends))
        .route("/__sim/friends/{user_id}", get(friend))
        .route("/__sim/clock", get(clock).post(advance_clock))
        .route("/__sim/reset", post(reset))
        .route("/__sim/access-token", post(set_access_token))
        .route("/__sim/webhook/send", post(send))
        .route("/__sim/webhook/redeliver", post(redeliver))
}

fn bad(message: impl Into<String>) -> Response {
    (StatusCode::BAD_REQUEST, Json(json!({ "message": message.into() }))).into_response()
}

async fn all_deliveries(AxumState(sim): AxumState<Arc<Sim>>) -> Json<Value> {
    let st = sim.state.lock().expect("sim state");
    let per: BTreeMap<&String, usize> = st.deliveries.iter().map(|(k, v)| (k, v.len())).collect();
    Json(json!({ "recipients": per.len(), "deliveries": per }))
}

async fn deliveries(AxumState(sim): AxumState<Arc<Sim>>, Path(to): Path<String>) -> Json<Value> {
    let st = sim.state.lock().expect("sim state");
    Json(json!(st.deliveries.get(&to).cloned().unwrap_or_default()))
}

#[derive(Deserialize)]
struct LogQuery {
    api: Option<String>,
    limit: Option<usize>,
}

async fn requests(AxumState(sim): AxumState<Arc<Sim>>, Query(q): Query<LogQuery>) -> Response {
    let api = match q.api.as_deref().map(|a| Api::parse(a).ok_or(a)) {
        Some(Err(a)) => return bad(format!("unknown api {a:?} (reply, push, multicast, quota, profile)")),
        Some(Ok(a)) => Some(a),
        None => None,
    };
    let st = sim.state.lock().expect("sim state");
    let limit = q.limit.unwrap_or(usize::MAX);
    let mut out: Vec<_> = st.log.iter().rev().filter(|e| api.is_none_or(|a| e.api == a)).take(limit).collect();
    out.reverse();
    Json(json!(out)).into_response()
}

async fn counters(AxumState(sim): AxumState<Arc<Sim>>) -> Json<Value> {
    let st = sim.state.lock().expect("sim state");
    Json(json!({
        "counters": st.counters,
        "usageThisMonth": st.usage_this_month(),
        "monthlyQuota": st.settings.monthly_quota,
        "friends": st.friends.len(),
    }))
}

async fn config(AxumState(sim): AxumState<Arc<Sim>>) -> Json<Settings> {
    Json(sim.state.lock().expect("sim state").settings.clone())
}

/// Merges the given fields into the settings (`{"monthlyQuota": 500}` changes only that).
async fn set_config(AxumState(sim): AxumState<Arc<Sim>>, Json(patch): Json<Value>) -> Response {
    let mut st = sim.state.lock().expect("sim state");
    let mut current = serde_json::to_value(&st.settings).expect("settings serialise");
    let (Some(c), Some(p)) = (current.as_object_mut(), patch.as_object()) else {
        return bad("expected a JSON object of settings");
    };
    for (k, v) in p {
        if k == "rateLimits" {
            for (api, rate) in v.as_object().into_iter().flatten() {
                c["rateLimits"][api] = rate.clone();
            }
        } else {
            c.insert(k.clone(), v.clone());
        }
    }
    match serde_json::from_value::<Settings>(current) {
        Ok(s) => {
            st.settings = s.clone();
            Json(s).into_response()
        }
        Err(e) => bad(format!("invalid settings: {e}")),
    }
}

async fn faults(AxumState(sim): AxumState<Arc<Sim>>) -> Json<Value> {
    Json(json!(sim.state.lock().expect("sim state").faults))
}

async fn set_faults(AxumState(sim): AxumState<Arc<Sim>>, Path(api): Path<String>, body: Json<Value>) -> Response {
    let Some(api) = Api::parse(&api) else { return bad(format!("unknown api {api:?}")) };
    let faults: Faults = match serde_json::from_value(body.0) {
        Ok(f) => f,
        Err(e) => return bad(format!("invalid faults: {e}")),
    };
    if faults
        .body_contains
        .as_deref()
        .is_some_and(|t| t.is_empty() || !matches!(api, Api::Reply | Api::Push | Api::Multicast))
    {
        return bad("bodyContains must be a non-empty text, on reply, push or multicast (the others have no body)");
    }
    let probabilities =
        [faults.error500, faults.rate_limit429, faults.hang, faults.hang_after_delivery, faults.forbidden403];
    if probabilities.iter().any(|p| !(0.0..=1.0).contains(p)) || probabilities.iter().sum::<f64>() > 1.0 {
        return bad("fault probabilities are each 0-1 and add up to at most 1");
    }
    sim.state.lock().expect("sim state").faults.insert(api, faults.clone());
    Json(json!(faults)).into_response()
}

async fn clear_faults(AxumState(sim): AxumState<Arc<Sim>>) -> StatusCode {
    sim.state.lock().expect("sim state").faults.clear();
    StatusCode::NO_CONTENT
}

async fn add_friends(AxumState(sim): AxumState<Arc<Sim>>, Json(friends): Json<Vec<Friend>>) -> Response {
    if let Some(f) = friends.iter().find(|f| !crate::state::is_user_id(&f.user_id)) {
        return bad(format!("{:?} is not a user ID (U + 32 hex digits)", f.user_id));
    }
    let mut st = sim.state.lock().expect("sim state");
    let n = friends.len();
    for f in friends {
        st.friends.insert(f.user_id.clone(), f);
    }
    Json(json!({ "added": n, "friends": st.friends.len() })).into_response()
}

async fn friend(AxumState(sim): AxumState<Arc<Sim>>, Path(user_id): Path<String>) -> Response {
    match sim.state.lock().expect("sim state").friends.get(&user_id) {
        Some(f) => Json(json!(f)).into_response(),
        None => (StatusCode::NOT_FOUND, Json(json!({ "message": "unknown friend" }))).into_response(),
    }
}

async fn clock(AxumState(sim): AxumState<Arc<Sim>>) -> Json<Value> {
    let st = sim.state.lock().expect("sim state");
    Json(json!({ "nowMs": st.now_ms(), "offsetMs": st.clock_offset_ms() }))
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Advance {
    advance_secs: i64,
}

async fn advance_clock(AxumState(sim): AxumState<Arc<Sim>>, Json(a): Json<Advance>) -> Json<Value> {
    let mut st = sim.state.lock().expect("sim state");
    st.advance(a.advance_secs * 1000);
    Json(json!({ "nowMs": st.now_ms(), "offsetMs": st.clock_offset_ms() }))
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct AccessToken {
    access_token: String,
}

/// The channel access token was reissued: from now on only the new one works (the old one: 401).
async fn set_access_token(AxumState(sim): AxumState<Arc<Sim>>, Json(t): Json<AccessToken>) -> Response {
    if t.access_token.trim().is_empty() {
        return bad("accessToken must not be empty");
    }
    sim.state.lock().expect("sim state").access_token = t.access_token;
    StatusCode::NO_CONTENT.into_response()
}

async fn reset(AxumState(sim): AxumState<Arc<Sim>>) -> StatusCode {
    sim.state.lock().expect("sim state").reset();
    StatusCode::NO_CONTENT
}

async fn send(AxumState(sim): AxumState<Arc<Sim>>, Json(request): Json<SendRequest>) -> Response {
    match sim.send(request).await {
        Ok(result) => Json(json!(result)).into_response(),
        Err(e) => bad(e),
    }
}

async fn redeliver(AxumState(sim): AxumState<Arc<Sim>>, Json(request): Json<RedeliverRequest>) -> Response {
    match sim.redeliver(request).await {
        Ok(result) => Json(json!(result)).into_response(),
        Err(e) => bad(e),
    }
}
