//! The entry layer: VRRPv3 (RFC 5798, IPv4) virtual addresses that move between gateways.
//!
//! Each `[[vip]]` instance runs [`machine::Machine`] on raw VRRP sockets; a Master adds its
//! addresses over rtnetlink and announces them with gratuitous ARP; [`track`] folds the
//! interface's link, other layers of this process and commands into its priority. Because the
//! instance runs in the same process as the layers it fronts, a Strata that dies stops
//! advertising, and its peers take the addresses.

pub mod advert;
mod arp;
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
use strata_layer::{BackendAction, Layer, LayerError, Work};
use strata_metrics::MetricsWriter;
use tokio::net::TcpListener;

use instance::Instance;
pub use track::Probe;
pub use weights::{weights_that_cannot_move, Peer};

/// Every `[[vip]]` instance of a node, as one [`Layer`].
pub struct VipLayer {
    instances: Mutex<Vec<Arc<Instance>>>,
    probe: Probe,
}

impl VipLayer {
    /// The layer; `probe` answers whether another layer's listener can serve, for `track`.
    pub fn new(probe: Probe) -> Self {
        VipLayer {
            instances: Mutex::new(Vec::new()),
            probe,
        }
    }

    fn lock(&self) -> MutexGuard<'_, Vec<Arc<Instance>>> {
        self.instances.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn stop_all(&self) -> Work<'static> {
        let all: Vec<Arc<Instance>> = self.lock().drain(..).collect();
        Box::pin(async move {
            // every Master hands over at once, not one after another
            let stops: Vec<_> = all
                .into_iter()
                .map(|i| tokio::spawn(async move { i.stop().await }))
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

    fn apply(&self, config: &Config, _bound: Vec<TcpListener>) -> Result<(), LayerError> {
        let mut running = self.lock();
        running.retain(|inst| {
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
                    tracing::info!(vip = %inst.name(), "instance removed; handing over");
                    let inst = inst.clone();
                    tokio::spawn(async move { inst.stop().await });
                    false
                }
            }
        });
        for c in &config.vip {
            if !running.iter().any(|i| i.name() == c.name) {
                running.push(Instance::start(c, self.probe.clone()));
            }
        }
        Ok(())
    }

    fn hand_over(&self) -> Work<'static> {
        self.stop_all()
    }

    fn drain(&self) -> Work<'static> {
        self.stop_all()
    }

    fn status(&self) -> Value {
        Value::Array(self.lock().iter().map(|i| i.status()).collect())
    }

    fn metrics(&self, w: &mut MetricsWriter) {
        for i in self.lock().iter() {
            i.metrics(w);
        }
    }

    fn backend_action(
        &self,
        listener: &str,
        _backend: &str,
        _action: BackendAction,
    ) -> Result<Value, String> {
        Err(format!(
            "vip instance \"{listener}\" has no backends: drain and restore act on http, tcp and cache listeners"
        ))
    }
}

/// The advert decoder, for the fuzz target.
#[cfg(feature = "fuzz")]
pub fn fuzz_decode(packet: &[u8]) -> Option<advert::Received> {
    advert::decode(packet).ok()
}
