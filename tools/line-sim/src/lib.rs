//! line-sim: a local LINE Messaging API, faithful to what the project depends on (see the README
//! section "line-sim"). Tests start it in-process on a random port with [`LineSim::start`];
//! `make local-up` runs the binary on 127.0.0.1:8090.
//!
//! - [`state`]: what the platform remembers and the rules it applies (tokens, retry keys, quota,
//!   rate limits, faults, deliveries);
//! - `api`: reply, push, multicast, quota, quota/consumption, profile;
//! - `inspect`: the `/__sim/` inspection and control API;
//! - `sender`: LINE's webhook side: builds, signs and POSTs events, and redelivers them;
//! - [`client`]: a typed client of `/__sim/` for tests and the `oa` CLI;
//! - [`Sim`]: one simulated channel (its state, secret and webhook), shared by the routes.

mod api;
pub mod client;
mod inspect;
pub mod sender;
mod sim;
pub mod state;

pub use sim::{Sim, SimConfig};

use std::net::SocketAddr;
use std::sync::Arc;

use axum::extract::DefaultBodyLimit;
use tokio::net::TcpListener;
use tokio::task::JoinHandle;

/// Every route: LINE's API and `/__sim/`.
pub fn router(sim: Arc<Sim>) -> axum::Router {
    // Bodies up to 64 MiB reach the handlers, which answer LINE's own 413 past 2 MB.
    api::routes().merge(inspect::routes()).layer(DefaultBodyLimit::max(64 << 20)).with_state(sim)
}

/// A simulator serving on a socket.
pub struct LineSim {
    pub addr: SocketAddr,
    pub sim: Arc<Sim>,
    task: JoinHandle<()>,
}

impl LineSim {
    /// Binds `addr` (port 0: any free port) and serves in the background.
    pub async fn start(config: SimConfig, addr: SocketAddr) -> std::io::Result<LineSim> {
        let listener = TcpListener::bind(addr).await?;
        let addr = listener.local_addr()?;
        let sim = Arc::new(Sim::new(config));
        let app = router(sim.clone());
        let task = tokio::spawn(async move {
            if let Err(e) = axum::serve(listener, app).await {
                tracing::error!("line-sim stopped: {e}");
            }
        });
        Ok(LineSim { addr, sim, task })
    }

    /// `http://127.0.0.1:<port>`: what LINE_API_BASE should be.
    pub fn base_url(&self) -> String {
        format!("http://{}", self.addr)
    }

    pub fn client(&self) -> client::SimClient {
        client::SimClient::new(&self.base_url())
    }
}

impl Drop for LineSim {
    fn drop(&mut self) {
        self.task.abort();
    }
}
