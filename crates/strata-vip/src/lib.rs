//! The entry layer: VRRPv3 (RFC 5798, IPv4) virtual addresses that move between gateways.
//!
//! Each `[[vip]]` instance runs [`machine::Machine`] on raw VRRP sockets; a Master adds its
//! addresses over rtnetlink and announces them with gratuitous ARP; [`track`] folds the
//! interface's link, other layers of this process and commands into its priority. Because the
//! instance runs in the same process as the layers it fronts, a Strata that dies stops
//! advertising, and its peers take the addresses.

pub mod advert;
mod arp;
#[cfg(any(test, feature = "fuzz"))]
#[doc(hidden)]
pub mod fuzz;
mod instance;
mod link;
pub mod machine;
mod socket;
pub mod track;
mod weights;

use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard};

use serde_json::Value;
use strata_config::Config;
use strata_layer::{ActionError, BackendAction, Layer, LayerError, Work};
use strata_metrics::MetricsWriter;
use tokio::net::TcpListener;
use tokio::task::JoinHandle;

use instance::Instance;
pub use track::Probe;
pub use weights::{weights_that_cannot_move, Peer};

/// Every `[[vip]]` instance of a node, as one [`Layer`].
pub struct VipLayer {
    state: Arc<Mutex<Running>>,
    probe: Probe,
}

/// The instances that run, and the work of replacing or removing others.
#[derive(Default)]
struct Running {
    instances: Vec<Arc<Instance>>,
    /// Instances handing over (removed or replaced by a reload), and the instances that
    /// start once they have: awaited by a drain.
    changing: Vec<JoinHandle<()>>,
    /// The node is draining: nothing starts any more.
    closed: bool,
}

impl VipLayer {
    /// The layer; `probe` answers whether another layer's listener can serve, for `track`.
    pub fn new(probe: Probe) -> Self {
        VipLayer {
            state: Arc::default(),
            probe,
        }
    }

    fn lock(&self) -> MutexGuard<'_, Running> {
        strata_net::lock(&self.state)
    }

    fn stop_all(&self) -> Work<'static> {
        let (all, changing) = {
            let mut state = self.lock();
            state.closed = true;
            (
                std::mem::take(&mut state.instances),
                std::mem::take(&mut state.changing),
            )
        };
        Box::pin(async move {
            // every Master hands over at once, not one after another
            let stops: Vec<_> = all
                .into_iter()
                .map(|i| tokio::spawn(async move { i.stop().await }))
                .chain(changing)
                .collect();
            for s in stops {
                let _ = s.await;
            }
        })
    }
}

impl Layer for VipLayer {
    fn name(&self) -> &'static str {
        "vip"
    }

    fn to_bind(&self, _config: &Config) -> Vec<(String, SocketAddr)> {
        Vec::new()
    }

    fn check(&self, _config: &Config) -> Result<(), LayerError> {
        Ok(())
    }

    /// Instances that keep their name, interface and vrid take their new settings in place.
    /// The others hand over first, and only then do new ones start: a replacement on the same
    /// addresses never finds the old instance still holding them.
    fn apply(&self, config: &Config, _bound: Vec<TcpListener>) -> Result<(), LayerError> {
        let mut state = self.lock();
        let mut removed = Vec::new();
        state.instances.retain(|inst| {
            let old = inst.config();
            let same = config
                .vip
                .iter()
                .find(|c| c.name == old.name && c.interface == old.interface && c.vrid == old.vrid);
            match same {
                Some(c) => {
                    inst.reload(c);
                    true
                }
                None => {
                    tracing::info!(vip = %inst.name(), "instance removed or changed; handing over");
                    removed.push(inst.clone());
                    false
                }
            }
        });
        let new: Vec<_> = config
            .vip
            .iter()
            .filter(|c| !state.instances.iter().any(|i| i.name() == c.name))
            .cloned()
            .collect();
        if removed.is_empty() {
            for c in &new {
                let started = Instance::start(c, self.probe.clone());
                state.instances.push(started);
            }
            return Ok(());
        }
        state.changing.retain(|h| !h.is_finished());
        let shared = self.state.clone();
        let probe = self.probe.clone();
        state.changing.push(tokio::spawn(async move {
            for old in removed {
                old.stop().await;
            }
            let mut state = strata_net::lock(&shared);
            if state.closed {
                return;
            }
            for c in &new {
                if !state.instances.iter().any(|i| i.name() == c.name) {
                    state.instances.push(Instance::start(c, probe.clone()));
                }
            }
        }));
        Ok(())
    }

    fn hand_over(&self) -> Work<'static> {
        self.stop_all()
    }

    fn drain(&self) -> Work<'static> {
        self.stop_all()
    }

    fn status(&self) -> Value {
        Value::Array(self.lock().instances.iter().map(|i| i.status()).collect())
    }

    fn endpoints(&self) -> Value {
        Value::Array(
            self.lock()
                .instances
                .iter()
                .map(|i| i.endpoints())
                .collect(),
        )
    }

    fn metrics(&self, w: &mut MetricsWriter) {
        for i in self.lock().instances.iter() {
            i.metrics(w);
        }
    }

    fn backend_action(
        &self,
        listener: &str,
        _backend: &str,
        _action: BackendAction,
    ) -> Result<Value, ActionError> {
        Err(ActionError::NotFound(format!(
            "vip instance \"{listener}\" has no backends: drain and restore act on http, tcp, cache and database listeners"
        )))
    }
}
