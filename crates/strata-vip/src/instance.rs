//! One running `[[vip]]` instance: its sockets, its state machine, the addresses it adds and
//! removes, its gratuitous ARPs, notify commands in order, and what `/status` and `/metrics`
//! show of it.

use std::collections::VecDeque;
use std::net::Ipv4Addr;
use std::sync::{Arc, Mutex};

use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};
use strata_net::lock;

use serde_json::{json, Value};
use strata_config::VipInstance;
use strata_metrics::{Counter, MetricsWriter};
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::advert::{self, Advert, Checksum, GROUP};
use crate::machine::{Action, Machine, Params, State};
use crate::track::{self, Health, Probe};
use crate::{arp, link, socket};

/// Transitions kept for `/status`.
const TRANSITIONS_KEPT: usize = 20;
/// A notify command that runs longer is killed, so the next one can run.
const NOTIFY_TIMEOUT: Duration = Duration::from_secs(30);
/// Changes waiting for notify at most; older ones are dropped.
const NOTIFY_QUEUED: usize = 8;
/// A stopping Master keeps its addresses at most this long waiting to hear its successor.
const HAND_OVER_WAIT: Duration = Duration::from_secs(3);
/// At most one extra round of gratuitous ARPs per this long when a second Master is heard.
const ANNOUNCE_EVERY: Duration = Duration::from_secs(1);
/// How long to wait before looking for a missing interface or address again.
const SETUP_RETRY: Duration = Duration::from_secs(1);

/// One state change, for `/status`.
#[derive(Debug, Clone)]
struct Transition {
    at: SystemTime,
    from: State,
    to: State,
    why: String,
}

/// What `/status` and `/metrics` show, updated by the instance's task.
#[derive(Debug)]
struct Shown {
    state: State,
    priority: u8,
    master: Option<Ipv4Addr>,
    primary: Option<Ipv4Addr>,
    master_interval_cs: u16,
    transitions: VecDeque<Transition>,
    health: Option<Health>,
    error: Option<String>,
}

/// Counters of one instance.
#[derive(Debug, Default)]
struct Stats {
    sent: Counter,
    received: Counter,
    other_vrid: Counter,
    transitions: Counter,
    garp: Counter,
    send_errors: Counter,
    invalid: Mutex<Vec<(&'static str, u64)>>,
}

/// A running instance, as the layer holds it.
pub struct Instance {
    name: String,
    config: watch::Sender<VipInstance>,
    shown: Mutex<Shown>,
    stats: Stats,
    stop: CancellationToken,
    task: Mutex<Option<JoinHandle<()>>>,
}

impl Instance {
    /// Starts the instance's task on the current runtime.
    pub fn start(config: &VipInstance, probe: Probe) -> Arc<Instance> {
        let (tx, rx) = watch::channel(config.clone());
        let inst = Arc::new(Instance {
            name: config.name.clone(),
            config: tx,
            shown: Mutex::new(Shown {
                state: State::Initialize,
                priority: config.priority,
                master: None,
                primary: None,
                master_interval_cs: interval_cs(config),
                transitions: VecDeque::new(),
                health: None,
                error: None,
            }),
            stats: Stats::default(),
            stop: CancellationToken::new(),
            task: Mutex::new(None),
        });
        let task = tokio::spawn(run(inst.clone(), rx, probe));
        *lock(&inst.task) = Some(task);
        inst
    }

    /// The instance's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The config it runs now.
    pub fn config(&self) -> VipInstance {
        self.config.borrow().clone()
    }

    /// Takes new settings of the same instance (same name, interface and vrid).
    pub fn reload(&self, config: &VipInstance) {
        self.config.send_if_modified(|c| {
            let changed = c != config;
            *c = config.clone();
            changed
        });
    }

    /// Tells the instance's task to stop (a Master hands over, as in [`Instance::stop`]),
    /// without waiting for it.
    pub fn cancel(&self) {
        self.stop.cancel();
    }

    /// The instance's task, for a test to wait on.
    #[cfg(test)]
    pub(crate) fn take_task(&self) -> Option<JoinHandle<()>> {
        lock(&self.task).take()
    }

    /// Stops the instance: a Master hands over (priority-0 advert, then waits for the new
    /// Master up to a bound, then removes its addresses). Returns when that is done.
    pub async fn stop(&self) {
        self.cancel();
        let task = lock(&self.task).take();
        if let Some(task) = task {
            let _ = task.await;
        }
    }

    /// The instance's addresses with whether this node holds them (it is Master), for
    /// `GET /endpoints`.
    pub fn endpoints(&self) -> Value {
        let config = self.config();
        let state = lock(&self.shown).state;
        json!({
            "name": self.name,
            "state": state.name(),
            "held": if state == State::Master {
                config.addresses.iter().map(|a| a.addr.to_string()).collect::<Vec<_>>()
            } else {
                Vec::new()
            },
        })
    }

    /// The instance as `/status` shows it.
    pub fn status(&self) -> Value {
        let config = self.config();
        let shown = lock(&self.shown);
        let transitions: Vec<Value> = shown
            .transitions
            .iter()
            .map(|t| {
                json!({
                    "at": t.at.duration_since(UNIX_EPOCH).map_or(0.0, |d| d.as_secs_f64()),
                    "from": t.from.name(),
                    "to": t.to.name(),
                    "why": t.why,
                })
            })
            .collect();
        let checks: Vec<Value> = shown
            .health
            .iter()
            .flat_map(|h| &h.checks)
            .map(|(label, ok, weight)| json!({"track": label, "healthy": ok, "weight": weight}))
            .collect();
        json!({
            "name": self.name,
            "interface": config.interface,
            "vrid": config.vrid,
            "state": shown.state.name(),
            "priority": shown.priority,
            "configured_priority": config.priority,
            "primary_address": shown.primary.map(|a| a.to_string()),
            "master": shown.master.map(|a| a.to_string()),
            "advert_interval_ms": config.advert_interval.as_millis() as u64,
            "master_advert_interval_ms": u64::from(shown.master_interval_cs) * 10,
            "addresses": config.addresses.iter().map(|a| format!("{}/{}", a.addr, a.prefix)).collect::<Vec<_>>(),
            "unicast_peers": config.unicast_peers.iter().map(|a| a.to_string()).collect::<Vec<_>>(),
            "fault": shown.health.as_ref().and_then(|h| h.fault.clone()),
            "error": shown.error,
            "tracks": checks,
            "transitions": transitions,
        })
    }

    /// Writes the instance's metrics.
    pub fn metrics(&self, w: &mut MetricsWriter) {
        let labels = [("vip", self.name.as_str())];
        let (state, priority) = {
            let s = lock(&self.shown);
            (s.state, s.priority)
        };
        let config = self.config();
        let vrid = config.vrid.to_string();
        for s in State::ALL {
            w.gauge(
                "strata_vip_state",
                "1 for the state each VRRP instance is in, 0 for the others.",
                &[
                    ("vip", self.name.as_str()),
                    ("vrid", vrid.as_str()),
                    ("interface", config.interface.as_str()),
                    ("state", s.name()),
                ],
                f64::from(u8::from(s == state)),
            );
        }
        w.gauge(
            "strata_vip_priority",
            "The priority each VRRP instance advertises now (tracked weights included).",
            &labels,
            f64::from(priority),
        );
        let counters: [(&'static str, &'static str, &Counter); 6] = [
            (
                "strata_vip_transitions_total",
                "State changes of each VRRP instance.",
                &self.stats.transitions,
            ),
            (
                "strata_vip_adverts_sent_total",
                "VRRP adverts sent.",
                &self.stats.sent,
            ),
            (
                "strata_vip_adverts_received_total",
                "Valid VRRP adverts received for the instance's VRID.",
                &self.stats.received,
            ),
            (
                "strata_vip_adverts_other_vrid_total",
                "Valid VRRP adverts received for other VRIDs on the interface.",
                &self.stats.other_vrid,
            ),
            (
                "strata_vip_garp_sent_total",
                "Gratuitous ARPs sent.",
                &self.stats.garp,
            ),
            (
                "strata_vip_send_errors_total",
                "Adverts or ARPs the kernel refused to send.",
                &self.stats.send_errors,
            ),
        ];
        for (name, help, c) in counters {
            w.counter(name, help, &labels, c.get());
        }
        for (reason, n) in lock(&self.stats.invalid).iter() {
            w.counter(
                "strata_vip_adverts_invalid_total",
                "Packets on the VRRP socket dropped as invalid, by reason.",
                &[("vip", self.name.as_str()), ("reason", reason)],
                *n,
            );
        }
    }

    fn count_invalid(&self, reason: &'static str) {
        let mut invalid = lock(&self.stats.invalid);
        match invalid.iter_mut().find(|(r, _)| *r == reason) {
            Some((_, n)) => *n += 1,
            None => invalid.push((reason, 1)),
        }
    }
}

fn interval_cs(config: &VipInstance) -> u16 {
    (config.advert_interval.as_millis() / 10).clamp(1, 4095) as u16
}

/// How long an added address lives unless renewed: a little over three advert intervals, and
/// at least 3 s (lifetimes count in seconds; they are renewed every second).
fn address_lifetime(config: &VipInstance) -> u32 {
    let three = config.advert_interval.as_secs_f64() * 3.0;
    (three.ceil() as u32 + 1).max(3)
}

fn params(config: &VipInstance, primary: Ipv4Addr) -> Params {
    Params {
        primary,
        priority: config.priority,
        interval_cs: interval_cs(config),
        preempt: config.preempt,
        preempt_delay: config.preempt_delay,
    }
}

/// The sockets and interface facts an instance runs on.
struct Io {
    index: u32,
    mac: [u8; 6],
    primary: Ipv4Addr,
    receiver: socket::Receiver,
    sender: socket::Sender,
    arp: arp::Sender,
}

impl Io {
    /// Finds the interface and its primary address (the first of its own, not a virtual one)
    /// and opens the sockets.
    fn open(config: &VipInstance) -> Result<Io, String> {
        let name = &config.interface;
        let index = link::index(name).map_err(|e| format!("interface {name}: {e}"))?;
        let mac = link::mac(name).map_err(|e| format!("interface {name}: {e}"))?;
        let addrs = link::addresses(index)
            .map_err(|e| format!("interface {name}: cannot list addresses: {e}"))?;
        let ours = |a: &link::Address| config.addresses.iter().any(|v| v.addr == a.addr);
        let primary = addrs
            .iter()
            .find(|a| !a.secondary && !ours(a))
            .or_else(|| addrs.iter().find(|a| !ours(a)))
            .map(|a| a.addr)
            .ok_or_else(|| {
                format!("interface {name} has no IPv4 address of its own to send adverts from")
            })?;
        let receiver = socket::Receiver::new(name, index)
            .map_err(|e| format!("VRRP socket on {name}: {e}"))?;
        let sender = socket::Sender::new(name, primary)
            .map_err(|e| format!("VRRP socket from {primary}: {e}"))?;
        let arp = arp::Sender::new(index).map_err(|e| format!("ARP socket on {name}: {e}"))?;
        Ok(Io {
            index,
            mac,
            primary,
            receiver,
            sender,
            arp,
        })
    }
}

/// The instance's task: find the interface, then run the machine until stopped.
async fn run(inst: Arc<Instance>, mut config_rx: watch::Receiver<VipInstance>, probe: Probe) {
    let config = config_rx.borrow_and_update().clone();
    let io = loop {
        match Io::open(&config) {
            Ok(io) => break io,
            Err(e) => {
                let first = lock(&inst.shown).error.as_ref() != Some(&e);
                if first {
                    tracing::error!(vip = %inst.name, "{e}; retrying every {SETUP_RETRY:?}");
                    let mut shown = lock(&inst.shown);
                    shown.error = Some(e);
                    shown.state = State::Fault;
                }
                tokio::select! {
                    _ = inst.stop.cancelled() => return,
                    _ = tokio::time::sleep(SETUP_RETRY) => {}
                }
            }
        }
    };
    {
        let mut shown = lock(&inst.shown);
        shown.error = None;
        shown.primary = Some(io.primary);
        shown.state = State::Initialize;
    }
    tracing::info!(vip = %inst.name, interface = %config.interface, vrid = config.vrid, primary = %io.primary, "VRRP instance starting");
    let queue = Arc::new(NotifyQueue::default());
    let notifier = tokio::spawn(notify(inst.name.clone(), queue.clone()));
    let tracking = CancellationToken::new();
    let tracker = tracking.child_token();
    let mut health_rx = track::start(&config, probe.clone(), tracker.clone());
    let mut run = Running {
        inst: inst.clone(),
        config,
        machine: Machine::new(params(&config_rx.borrow(), io.primary)),
        io,
        notify: queue.clone(),
        garp_again: None,
        garp_refresh: None,
        last_announce: None,
        mismatch_logged: false,
        tracker,
        local_fault: None,
        last_health: None,
        last_refresh: None,
    };
    // a node that crashed as Master may have left the addresses behind: a Backup holds none
    if run.config.priority != 255 {
        run.release();
    }
    let health = health_rx.borrow_and_update().clone();
    run.health(health);
    let actions = run.machine.start(Instant::now());
    run.act(actions);

    let mut buf = vec![0u8; 4096];
    loop {
        let deadline = run.next_deadline();
        tokio::select! {
            _ = inst.stop.cancelled() => break,
            r = run.io.receiver.recv(&mut buf) => match r {
                Ok(n) => run.packet(&buf[..n]),
                Err(e) => {
                    tracing::warn!(vip = %inst.name, "VRRP receive failed: {e}");
                    // a socket that keeps failing would otherwise spin this loop (and the log)
                    tokio::time::sleep(Duration::from_millis(10)).await;
                }
            },
            _ = sleep_until(deadline) => run.timers(),
            r = health_rx.changed() => {
                if r.is_ok() {
                    let health = health_rx.borrow_and_update().clone();
                    run.health(health);
                }
            }
            r = config_rx.changed() => {
                if r.is_ok() {
                    let new = config_rx.borrow_and_update().clone();
                    run.reconfigure(new, &probe, &mut health_rx, &tracking);
                }
            }
        }
    }
    run.hand_over(&mut buf).await;
    tracking.cancel();
    drop(run);
    queue.close();
    let _ = notifier.await;
}

async fn sleep_until(deadline: Option<Instant>) {
    match deadline {
        Some(d) => tokio::time::sleep_until(tokio::time::Instant::from_std(d)).await,
        None => std::future::pending().await,
    }
}

/// Changes waiting for their notify command, oldest first.
#[derive(Default)]
struct NotifyQueue {
    items: Mutex<VecDeque<(String, &'static str, u8)>>,
    wake: tokio::sync::Notify,
    closed: std::sync::atomic::AtomicBool,
}

impl NotifyQueue {
    /// Queues a change; past [`NOTIFY_QUEUED`] the oldest is dropped (with a warning), so a
    /// flapping instance or a slow script never falls further behind than that, and the
    /// latest state is always told.
    fn push(&self, instance: &str, item: (String, &'static str, u8)) {
        let mut items = lock(&self.items);
        if items.len() >= NOTIFY_QUEUED {
            if let Some((_, state, _)) = items.pop_front() {
                tracing::warn!(vip = %instance, dropped = state, "notify is behind: the oldest waiting change is not told");
            }
        }
        items.push_back(item);
        drop(items);
        self.wake.notify_one();
    }

    fn close(&self) {
        self.closed.store(true, std::sync::atomic::Ordering::SeqCst);
        self.wake.notify_one();
    }
}

/// Runs notify commands one at a time, in the order the changes happened.
async fn notify(instance: String, queue: Arc<NotifyQueue>) {
    loop {
        let next = lock(&queue.items).pop_front();
        let Some((command, state, priority)) = next else {
            if queue.closed.load(std::sync::atomic::Ordering::SeqCst) {
                return;
            }
            queue.wake.notified().await;
            continue;
        };
        let prio = priority.to_string();
        // keepalived's arguments, so its users' notify scripts work unchanged
        let args = ["INSTANCE", instance.as_str(), state, prio.as_str()];
        match track::run_shell(&command, &args, NOTIFY_TIMEOUT).await {
            Ok(()) => {
                tracing::info!(vip = %instance, state, %command, "notify ran: exit status 0")
            }
            Err(why) => tracing::warn!(vip = %instance, state, %command, "notify {why}"),
        }
    }
}

/// The live part of an instance's task.
struct Running {
    inst: Arc<Instance>,
    config: VipInstance,
    machine: Machine,
    io: Io,
    notify: Arc<NotifyQueue>,
    /// When the second burst of gratuitous ARPs is due.
    garp_again: Option<Instant>,
    /// When the next refresh burst is due.
    garp_refresh: Option<Instant>,
    last_announce: Option<Instant>,
    mismatch_logged: bool,
    /// Stops the tracker of the current config generation.
    tracker: CancellationToken,
    /// A Fault of the instance's own (the addresses could not be added), and until when.
    local_fault: Option<(String, Instant)>,
    /// What the tracker last found.
    last_health: Option<Health>,
    /// When the addresses' lifetimes were last renewed.
    last_refresh: Option<Instant>,
}

/// A Running dropped without its hand-over (the runtime shutting down past the drain
/// deadline) still takes its addresses off the interface.
impl Drop for Running {
    fn drop(&mut self) {
        if self.machine.state() == State::Master {
            self.release();
        }
    }
}

impl Running {
    fn next_deadline(&self) -> Option<Instant> {
        let fault_ends = self.local_fault.as_ref().map(|(_, t)| *t);
        [
            self.machine.deadline(),
            self.garp_again,
            self.garp_refresh,
            fault_ends,
        ]
        .into_iter()
        .flatten()
        .min()
    }

    /// Feeds the tracker's finding, with the instance's own Fault, to the machine.
    fn health(&mut self, health: Health) {
        let fault = health
            .fault
            .clone()
            .or_else(|| self.local_fault.as_ref().map(|(why, _)| why.clone()));
        let actions = self
            .machine
            .on_health(Instant::now(), health.priority, fault);
        lock(&self.inst.shown).health = Some(health.clone());
        self.last_health = Some(health);
        self.act(actions);
    }

    fn timers(&mut self) {
        let now = Instant::now();
        if self.local_fault.as_ref().is_some_and(|(_, t)| *t <= now) {
            self.local_fault = None;
            if let Some(h) = self.last_health.clone() {
                self.health(h);
            }
        }
        if self.garp_again.is_some_and(|t| t <= now) {
            self.garp_again = None;
            self.garp();
        }
        if self.garp_refresh.is_some_and(|t| t <= now) {
            self.garp();
            self.garp_refresh = self.config.garp_refresh.map(|d| now + d);
        }
        let actions = self.machine.on_timer(now);
        self.act(actions);
    }

    fn packet(&mut self, packet: &[u8]) {
        let r = match advert::decode(packet) {
            Ok(r) => r,
            Err(e) => {
                tracing::debug!(vip = %self.inst.name, "dropped a packet: {e}");
                self.inst.count_invalid(e.reason());
                return;
            }
        };
        if r.advert.vrid != self.config.vrid {
            self.inst.stats.other_vrid.inc();
            return;
        }
        if r.source == self.io.primary {
            return;
        }
        if !self.config.unicast_peers.is_empty() && !self.config.unicast_peers.contains(&r.source) {
            // with unicast peers, only they speak for this virtual router (as keepalived)
            self.inst.count_invalid("not_a_peer");
            return;
        }
        self.inst.stats.received.inc();
        if !self.mismatch_logged && r.advert.priority != 0 {
            let mut ours: Vec<Ipv4Addr> = self.config.addresses.iter().map(|a| a.addr).collect();
            let mut theirs = r.advert.addresses.clone();
            ours.sort();
            theirs.sort();
            if ours != theirs {
                // RFC 5798 §7.1: log a misconfiguration, and carry on
                tracing::warn!(vip = %self.inst.name, peer = %r.source, ?theirs, ?ours, "a peer advertises other virtual addresses for this VRID");
                self.mismatch_logged = true;
            }
        }
        let actions = self.machine.on_advert(
            Instant::now(),
            r.source,
            r.advert.priority,
            r.advert.interval_cs,
        );
        self.act(actions);
    }

    fn act(&mut self, actions: Vec<Action>) {
        for a in actions {
            match a {
                Action::Advertise(priority) => {
                    self.advertise(priority);
                    if priority > 0 {
                        self.refresh();
                    }
                }
                Action::TakeAddresses => {
                    self.take();
                    self.garp();
                    let now = Instant::now();
                    self.garp_again =
                        (!self.config.garp_delay.is_zero()).then(|| now + self.config.garp_delay);
                    self.garp_refresh = self.config.garp_refresh.map(|d| now + d);
                }
                Action::Announce => {
                    let now = Instant::now();
                    if self.last_announce.is_none_or(|t| now >= t + ANNOUNCE_EVERY) {
                        tracing::warn!(vip = %self.inst.name, "another Master was heard (a healed partition?): asserting, and announcing the addresses again");
                        self.last_announce = Some(now);
                        self.garp();
                    }
                }
                Action::ReleaseAddresses => {
                    self.garp_again = None;
                    self.garp_refresh = None;
                    self.release();
                }
                Action::Changed { from, to, why } => self.changed(from, to, why),
            }
        }
        let mut shown = lock(&self.inst.shown);
        shown.priority = self.machine.priority();
        shown.master = self.machine.master();
        shown.master_interval_cs = self.machine.master_adver_interval_cs();
    }

    fn changed(&mut self, from: State, to: State, why: String) {
        tracing::info!(vip = %self.inst.name, from = from.name(), to = to.name(), priority = self.machine.priority(), "{why}");
        self.inst.stats.transitions.inc();
        {
            let mut shown = lock(&self.inst.shown);
            shown.state = to;
            if shown.transitions.len() == TRANSITIONS_KEPT {
                shown.transitions.pop_front();
            }
            shown.transitions.push_back(Transition {
                at: SystemTime::now(),
                from,
                to,
                why,
            });
        }
        // keepalived's states: STOP when the instance stops; the passing INIT on the way out
        // of Fault is not told
        let told = match to {
            State::Initialize if from != State::Fault => Some("STOP"),
            State::Initialize => None,
            other => Some(other.name()),
        };
        if let (Some(command), Some(state)) = (&self.config.notify, told) {
            self.notify.push(
                &self.inst.name,
                (command.clone(), state, self.machine.priority()),
            );
        }
    }

    fn advertise(&self, priority: u8) {
        let advert = Advert {
            vrid: self.config.vrid,
            priority,
            interval_cs: interval_cs(&self.config),
            addresses: self.config.addresses.iter().map(|a| a.addr).collect(),
        };
        let with = if self.config.checksum_pseudo_header {
            Checksum::PseudoHeader
        } else {
            Checksum::AdvertOnly
        };
        let group = [GROUP];
        let to: &[Ipv4Addr] = if self.config.unicast_peers.is_empty() {
            &group
        } else {
            &self.config.unicast_peers
        };
        for &dst in to {
            let bytes = advert.encode(self.io.primary, dst, with);
            match self.io.sender.send(&bytes, dst) {
                Ok(()) => self.inst.stats.sent.inc(),
                Err(e) => {
                    self.inst.stats.send_errors.inc();
                    tracing::debug!(vip = %self.inst.name, %dst, "advert not sent: {e}");
                }
            }
        }
    }

    /// Adds the addresses (or renews their lifetimes). They are added with a lifetime of a
    /// few advert intervals, renewed while Master, so a Strata killed with -9 does not leave
    /// them answering ARP on a host that is still up. An address that can't be added puts the
    /// instance in Fault for a second, then it tries again: a Master without its addresses
    /// would only keep its peers from taking them.
    fn take(&mut self) {
        let lifetime = address_lifetime(&self.config);
        let mut failed = None;
        for a in &self.config.addresses {
            if let Err(e) = link::add(self.io.index, a.addr, a.prefix, lifetime) {
                tracing::error!(vip = %self.inst.name, addr = %a.addr, interface = %self.config.interface, "cannot add the virtual address: {e}");
                failed = Some(format!(
                    "cannot add {} to {}: {e}",
                    a.addr, self.config.interface
                ));
            }
        }
        self.last_refresh = Some(Instant::now());
        if let Some(why) = failed {
            self.local_fault = Some((why, Instant::now() + SETUP_RETRY));
            if let Some(h) = self.last_health.clone() {
                self.health(h);
            }
        }
    }

    /// Renews the addresses' lifetimes, about once a second while Master.
    fn refresh(&mut self) {
        let due = self
            .last_refresh
            .is_none_or(|t| t.elapsed() >= Duration::from_secs(1));
        if due && self.machine.state() == State::Master {
            self.take();
        }
    }

    fn release(&self) {
        for a in &self.config.addresses {
            if let Err(e) = link::remove(self.io.index, a.addr, a.prefix) {
                tracing::error!(vip = %self.inst.name, addr = %a.addr, interface = %self.config.interface, "cannot remove the virtual address: {e}");
            }
        }
    }

    fn garp(&self) {
        for _ in 0..self.config.garp_count {
            for a in &self.config.addresses {
                match self.io.arp.send(&arp::frame(self.io.mac, a.addr)) {
                    Ok(()) => self.inst.stats.garp.inc(),
                    Err(e) => {
                        self.inst.stats.send_errors.inc();
                        tracing::debug!(vip = %self.inst.name, addr = %a.addr, "gratuitous ARP not sent: {e}");
                    }
                }
            }
        }
    }

    /// Applies a reload: addresses added or dropped while Master are added or removed, the
    /// tracker restarts on the new entries, the machine takes the new priority and interval.
    fn reconfigure(
        &mut self,
        new: VipInstance,
        probe: &Probe,
        health_rx: &mut watch::Receiver<Health>,
        tracking: &CancellationToken,
    ) {
        let old = std::mem::replace(&mut self.config, new);
        if self.machine.state() == State::Master {
            for a in &old.addresses {
                if !self.config.addresses.contains(a) {
                    let _ = link::remove(self.io.index, a.addr, a.prefix);
                }
            }
            self.take();
            self.garp();
        }
        let actions = self
            .machine
            .reconfigure(Instant::now(), params(&self.config, self.io.primary));
        self.act(actions);
        if old.track != self.config.track || old.priority != self.config.priority {
            self.tracker.cancel();
            self.tracker = tracking.child_token();
            *health_rx = track::start(&self.config, probe.clone(), self.tracker.clone());
            // the new tracker's first finding is the health from now on (a watch channel's
            // first value never shows as a change)
            let health = health_rx.borrow_and_update().clone();
            self.health(health);
        }
        tracing::info!(vip = %self.inst.name, "reloaded");
    }

    /// On the way out: a Master advertises priority 0 and keeps serving the addresses until a
    /// new Master is heard (at most Master_Down_Interval of a priority-1 Backup), then removes
    /// them; clients' connections land on one of the two all along.
    async fn hand_over(&mut self, buf: &mut [u8]) {
        if self.machine.state() == State::Master {
            self.advertise(0);
            let wait = Duration::from_millis(u64::from(interval_cs(&self.config)) * 10 * 4)
                .min(HAND_OVER_WAIT);
            let until = tokio::time::Instant::now() + wait;
            loop {
                tokio::select! {
                    _ = tokio::time::sleep_until(until) => break,
                    r = self.io.receiver.recv(buf) => {
                        let Ok(n) = r else { break };
                        if let Ok(r) = advert::decode(&buf[..n]) {
                            if r.advert.vrid == self.config.vrid && r.source != self.io.primary && r.advert.priority > 0 {
                                tracing::info!(vip = %self.inst.name, master = %r.source, "the new Master advertises: handing over");
                                break;
                            }
                        }
                    }
                }
            }
        }
        let actions: Vec<Action> = self
            .machine
            .shutdown()
            .into_iter()
            .filter(|a| *a != Action::Advertise(0))
            .collect();
        self.act(actions);
    }
}
