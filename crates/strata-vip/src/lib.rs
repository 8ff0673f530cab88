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
    /// Instances handing over now: until none is, nothing new starts (a replacement on the
    /// same addresses must not find the old instance still holding them).
    stopping: usize,
    /// The instances of the latest config: what starts once nothing is handing over (not what
    /// the config was when the hand-over began: a reload meanwhile may have changed it).
    desired: Vec<strata_config::VipInstance>,
    /// The node is draining: nothing starts any more.
    closed: bool,
}

impl Running {
    /// Starts the instances of the latest config that do not run yet, unless some are still
    /// handing over (the last of those starts them) or the node is draining.
    fn start_desired(&mut self, probe: &Probe) {
        if self.stopping > 0 || self.closed {
            return;
        }
        let start: Vec<_> = self
            .desired
            .iter()
            .filter(|c| !self.instances.iter().any(|i| i.name() == c.name))
            .cloned()
            .collect();
        for c in &start {
            self.instances.push(Instance::start(c, probe.clone()));
        }
    }
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

/// A layer dropped without a drain (an embedder's node dropped) stops its instances, as
/// dropped listeners stop accepting: each Master hands over in the background, and nothing
/// goes on advertising for a node that is gone.
impl Drop for VipLayer {
    fn drop(&mut self) {
        let mut state = self.lock();
        state.closed = true;
        for instance in &state.instances {
            instance.cancel();
        }
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
    /// addresses never finds the old instance still holding them. What starts then is what
    /// the latest config asks for, whatever reloads came during the hand-over.
    fn apply(&self, config: &Config, _bound: Vec<TcpListener>) -> Result<(), LayerError> {
        let mut state = self.lock();
        state.desired = config.vip.clone();
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
        if removed.is_empty() {
            state.start_desired(&self.probe);
            return Ok(());
        }
        state.stopping += removed.len();
        state.changing.retain(|h| !h.is_finished());
        let shared = self.state.clone();
        let probe = self.probe.clone();
        state.changing.push(tokio::spawn(async move {
            let n = removed.len();
            for old in removed {
                old.stop().await;
            }
            let mut state = strata_net::lock(&shared);
            state.stopping -= n;
            state.start_desired(&probe);
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

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_dropped_layer_stops_its_instances() {
        // an interface that does not exist: the instance waits for it, as it would at boot
        let text = "[[vip]]\nname = \"v\"\ninterface = \"strata-none0\"\nvrid = 9\npriority = 100\naddresses = [\"10.9.9.9/24\"]\n";
        let config = strata_config::parse(text, "test.toml", std::path::Path::new(".")).unwrap();
        let layer = VipLayer::new(Arc::new(|_: &str, _: &str| None));
        layer.apply(&config, Vec::new()).unwrap();
        let task = layer.lock().instances[0].take_task().unwrap();
        drop(layer);
        tokio::time::timeout(std::time::Duration::from_secs(10), task)
            .await
            .expect("the instance still runs after its layer was dropped")
            .unwrap();
    }
}
