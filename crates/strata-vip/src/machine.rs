//! The VRRPv3 state machine of RFC 5798 §6.4, without sockets or clocks of its own: it is fed
//! events with the time they happen and answers with what to do, so every rule is a unit test.

use std::net::Ipv4Addr;
use std::time::{Duration, Instant};

/// The state of an instance, as the RFC names them, plus Fault (keepalived's name for an
/// instance a tracked check has taken out).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum State {
    /// Not started, or stopped.
    Initialize,
    /// Watching the Master's adverts, ready to take over.
    Backup,
    /// Holding the virtual addresses and advertising.
    Master,
    /// A tracked check failed: no addresses, no adverts, until it recovers.
    Fault,
}

impl State {
    /// The state's name in logs, metrics, `/status` and notify arguments.
    pub fn name(self) -> &'static str {
        match self {
            State::Initialize => "INIT",
            State::Backup => "BACKUP",
            State::Master => "MASTER",
            State::Fault => "FAULT",
        }
    }

    /// Every state, for metrics.
    pub const ALL: [State; 4] = [
        State::Initialize,
        State::Backup,
        State::Master,
        State::Fault,
    ];
}

/// What the machine asks the instance to do, in order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// Send an advert with this priority.
    Advertise(u8),
    /// Add the virtual addresses to the interface and announce them (gratuitous ARP).
    TakeAddresses,
    /// Announce the addresses again (another Master was heard: a partition healed).
    Announce,
    /// Remove the virtual addresses from the interface.
    ReleaseAddresses,
    /// The state changed, and why.
    Changed {
        /// The state left.
        from: State,
        /// The state entered.
        to: State,
        /// What made it change, for logs and `/status`.
        why: String,
    },
}

/// The settings the machine runs on (from the config, and the interface).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Params {
    /// This node's primary address on the link: the tie-breaker between equal priorities.
    pub primary: Ipv4Addr,
    /// The configured priority; 255 makes this node the address owner.
    pub priority: u8,
    /// This node's advert interval in centiseconds.
    pub interval_cs: u16,
    /// Take over from a lower-priority Master.
    pub preempt: bool,
    /// How long after starting a Backup holds off preempting.
    pub preempt_delay: Duration,
}

/// One instance's machine.
#[derive(Debug)]
pub struct Machine {
    params: Params,
    state: State,
    /// The priority advertised now: the configured one moved by tracked weights.
    priority: u8,
    /// Set by a failed Fault-type track; the instance stays in Fault while set.
    fault: Option<String>,
    master_adver_interval_cs: u16,
    adver_timer: Option<Instant>,
    master_down_timer: Option<Instant>,
    /// When the instance last entered Backup from Initialize: preempt_delay counts from here.
    started: Option<Instant>,
    /// The Master last heard from, when this node is not it.
    master: Option<Ipv4Addr>,
    /// What the last advert from it said, for the reason a Backup gives for taking over.
    heard: Heard,
    /// When a Master last answered another router's advert at once: at most once an interval,
    /// so a flood of adverts is not answered with a flood.
    last_assert: Option<Instant>,
}

/// What a Backup last made of the Master's adverts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Heard {
    /// Its adverts, accepted.
    Advert,
    /// It advertised priority 0: it is leaving.
    Leaving,
    /// A lower priority than this node's, ignored so as to preempt it.
    Lower(u8),
}

/// Centiseconds as a duration.
fn cs(n: u32) -> Duration {
    Duration::from_millis(u64::from(n) * 10)
}

impl Machine {
    /// A machine in Initialize; [`Machine::start`] sets it going.
    pub fn new(params: Params) -> Self {
        Machine {
            priority: params.priority,
            master_adver_interval_cs: params.interval_cs,
            params,
            state: State::Initialize,
            fault: None,
            adver_timer: None,
            master_down_timer: None,
            started: None,
            master: None,
            heard: Heard::Advert,
            last_assert: None,
        }
    }

    /// The current state.
    pub fn state(&self) -> State {
        self.state
    }

    /// The priority advertised now.
    pub fn priority(&self) -> u8 {
        self.priority
    }

    /// The Master this node last heard from (itself when Master).
    pub fn master(&self) -> Option<Ipv4Addr> {
        match self.state {
            State::Master => Some(self.params.primary),
            _ => self.master,
        }
    }

    /// The Master's advert interval as learned from its adverts, in centiseconds.
    pub fn master_adver_interval_cs(&self) -> u16 {
        self.master_adver_interval_cs
    }

    /// Skew_Time (§6.1): how much later than a higher-priority Backup this one gives up on a
    /// silent Master.
    pub fn skew_time(&self) -> Duration {
        let p = u32::from(self.priority.max(1));
        Duration::from_micros(
            u64::from(256 - p) * u64::from(self.master_adver_interval_cs) * 10_000 / 256,
        )
    }

    /// Master_Down_Interval (§6.1): three missed adverts and the skew.
    pub fn master_down_interval(&self) -> Duration {
        cs(3 * u32::from(self.master_adver_interval_cs)) + self.skew_time()
    }

    /// When [`Machine::on_timer`] is due next.
    pub fn deadline(&self) -> Option<Instant> {
        match self.state {
            State::Master => self.adver_timer,
            State::Backup => self.master_down_timer,
            _ => None,
        }
    }

    fn owner(&self) -> bool {
        self.params.priority == 255
    }

    fn change(&mut self, to: State, why: String, out: &mut Vec<Action>) {
        let from = self.state;
        self.state = to;
        out.push(Action::Changed { from, to, why });
    }

    /// Leaves Initialize (§6.4.1): the owner becomes Master at once, anyone else Backup.
    pub fn start(&mut self, now: Instant) -> Vec<Action> {
        let mut out = Vec::new();
        if self.state != State::Initialize {
            return out;
        }
        if let Some(why) = self.fault.clone() {
            self.change(State::Fault, why, &mut out);
            return out;
        }
        self.started = Some(now);
        self.master = None;
        self.heard = Heard::Advert;
        if self.owner() {
            self.become_master(now, "address owner (priority 255)".into(), &mut out);
        } else {
            self.master_adver_interval_cs = self.params.interval_cs;
            self.master_down_timer = Some(now + self.master_down_interval());
            self.change(State::Backup, "started".into(), &mut out);
        }
        out
    }

    fn become_master(&mut self, now: Instant, why: String, out: &mut Vec<Action>) {
        out.push(Action::Advertise(self.priority));
        out.push(Action::TakeAddresses);
        self.adver_timer = Some(now + cs(u32::from(self.params.interval_cs)));
        self.master_down_timer = None;
        self.master = None;
        self.heard = Heard::Advert;
        self.master_adver_interval_cs = self.params.interval_cs;
        self.change(State::Master, why, out);
    }

    /// A Master yields to `from`. It says priority 0 as it goes: the winner may never have
    /// heard this node (it yields to the first advert after a partition heals), and a
    /// priority 0 tells it to announce the addresses that were on this node's link.
    fn become_backup(
        &mut self,
        now: Instant,
        from: Ipv4Addr,
        interval_cs: u16,
        why: String,
        out: &mut Vec<Action>,
    ) {
        out.push(Action::Advertise(0));
        self.adver_timer = None;
        self.master_adver_interval_cs = interval_cs;
        self.master_down_timer = Some(now + self.master_down_interval());
        self.master = Some(from);
        out.push(Action::ReleaseAddresses);
        self.change(State::Backup, why, out);
    }

    /// The timer of [`Machine::deadline`] fired.
    pub fn on_timer(&mut self, now: Instant) -> Vec<Action> {
        let mut out = Vec::new();
        match self.state {
            State::Master if self.adver_timer.is_some_and(|t| t <= now) => {
                out.push(Action::Advertise(self.priority));
                self.adver_timer = Some(now + cs(u32::from(self.params.interval_cs)));
            }
            State::Backup if self.master_down_timer.is_some_and(|t| t <= now) => {
                let why = match (self.master, self.heard) {
                    (Some(m), Heard::Leaving) => {
                        format!("the Master {m} stepped down (priority 0)")
                    }
                    (Some(m), Heard::Lower(p)) => format!(
                        "preempting the Master {m} (priority {p} < {})",
                        self.priority
                    ),
                    (Some(m), Heard::Advert) => format!(
                        "no advert from the Master {m} for {:?}",
                        self.master_down_interval()
                    ),
                    (None, _) => format!("no Master heard for {:?}", self.master_down_interval()),
                };
                self.become_master(now, why, &mut out);
            }
            _ => {}
        }
        out
    }

    /// An advert for this VRID arrived from `source` (§6.4.2, §6.4.3).
    pub fn on_advert(
        &mut self,
        now: Instant,
        source: Ipv4Addr,
        priority: u8,
        interval_cs: u16,
    ) -> Vec<Action> {
        let mut out = Vec::new();
        if source == self.params.primary {
            return out; // our own, looped back
        }
        match self.state {
            State::Backup => {
                if priority == 0 {
                    // the Master is leaving: take over after the skew alone
                    self.master_down_timer = Some(now + self.skew_time());
                    self.master = Some(source);
                    self.heard = Heard::Leaving;
                    return out;
                }
                let holding_off = self
                    .started
                    .is_some_and(|t| now < t + self.params.preempt_delay);
                if !self.params.preempt || holding_off || priority >= self.priority {
                    self.master_adver_interval_cs = interval_cs;
                    self.master_down_timer = Some(now + self.master_down_interval());
                    self.master = Some(source);
                    self.heard = Heard::Advert;
                } else {
                    // a lower-priority Master, and this node preempts: let the timer run out
                    self.master = Some(source);
                    self.heard = Heard::Lower(priority);
                }
            }
            State::Master => {
                let interval = cs(u32::from(self.params.interval_cs));
                let may_assert = self.last_assert.is_none_or(|t| now >= t + interval);
                if priority == 0 {
                    // Only a node that believed itself Master sends priority 0: it may have
                    // held the addresses on its own link until now (a split brain healing).
                    // Assert, and announce them again.
                    if may_assert {
                        self.last_assert = Some(now);
                        out.push(Action::Advertise(self.priority));
                        out.push(Action::Announce);
                        self.adver_timer = Some(now + interval);
                    }
                } else if priority > self.priority
                    || (priority == self.priority && source > self.params.primary)
                {
                    let why = if priority > self.priority {
                        format!(
                            "{source} advertises a higher priority ({priority} > {})",
                            self.priority
                        )
                    } else {
                        format!("{source} advertises the same priority ({priority}) from a higher address")
                    };
                    self.become_backup(now, source, interval_cs, why, &mut out);
                } else if may_assert {
                    // Another Master with a lower claim: a partition has healed, or a peer
                    // started without hearing this one. Assert at once, and announce the
                    // addresses again, since the other may have taken them over its link.
                    self.last_assert = Some(now);
                    out.push(Action::Advertise(self.priority));
                    out.push(Action::Announce);
                    self.adver_timer = Some(now + interval);
                }
            }
            State::Initialize | State::Fault => {}
        }
        out
    }

    /// The tracked checks moved the priority (weights) or set or cleared a Fault.
    pub fn on_health(&mut self, now: Instant, priority: u8, fault: Option<String>) -> Vec<Action> {
        let mut out = Vec::new();
        let priority = if self.owner() {
            255
        } else {
            priority.clamp(1, 254)
        };
        let lowered = priority < self.priority;
        self.priority = priority;
        match (self.state, fault) {
            (State::Fault, None) => {
                self.fault = None;
                self.state = State::Initialize;
                out.push(Action::Changed {
                    from: State::Fault,
                    to: State::Initialize,
                    why: "tracked checks recovered".into(),
                });
                out.extend(self.start(now));
            }
            (State::Fault, Some(why)) => self.fault = Some(why),
            (State::Initialize, f) => self.fault = f,
            (state, Some(why)) => {
                if state == State::Master {
                    out.push(Action::Advertise(0));
                    out.push(Action::ReleaseAddresses);
                }
                self.adver_timer = None;
                self.master_down_timer = None;
                self.master = None;
                self.fault = Some(why.clone());
                self.change(State::Fault, why, &mut out);
            }
            (State::Master, None) if lowered => {
                // let a Backup that now outranks this node preempt without waiting a round
                out.push(Action::Advertise(self.priority));
                self.adver_timer = Some(now + cs(u32::from(self.params.interval_cs)));
            }
            // a Backup that has heard no Master yet: its skew follows its priority
            (State::Backup, None) if self.master_down_timer.is_some() && self.master.is_none() => {
                self.master_down_timer = Some(now + self.master_down_interval());
            }
            _ => {}
        }
        out
    }

    /// New settings from a reload. The priority it advertises comes from the next
    /// [`Machine::on_health`] (the tracker weighs the new configured priority); a Master
    /// advertises its new settings at once.
    pub fn reconfigure(&mut self, now: Instant, params: Params) -> Vec<Action> {
        let mut out = Vec::new();
        self.params = params;
        if self.state == State::Master {
            self.master_adver_interval_cs = self.params.interval_cs;
            out.push(Action::Advertise(self.priority));
            self.adver_timer = Some(now + cs(u32::from(self.params.interval_cs)));
        }
        out
    }

    /// Shuts down (§6.4.3): a Master advertises priority 0 so a Backup takes over after its
    /// skew, then releases the addresses.
    pub fn shutdown(&mut self) -> Vec<Action> {
        let mut out = Vec::new();
        if self.state == State::Master {
            out.push(Action::Advertise(0));
            out.push(Action::ReleaseAddresses);
        }
        self.adver_timer = None;
        self.master_down_timer = None;
        if self.state != State::Initialize {
            self.change(State::Initialize, "stopped".into(), &mut out);
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn params(priority: u8) -> Params {
        Params {
            primary: Ipv4Addr::new(10, 0, 0, 1),
            priority,
            interval_cs: 10,
            preempt: true,
            preempt_delay: Duration::ZERO,
        }
    }

    fn has(actions: &[Action], a: &Action) -> bool {
        actions.contains(a)
    }

    fn to(actions: &[Action]) -> Option<State> {
        actions.iter().rev().find_map(|a| match a {
            Action::Changed { to, .. } => Some(*to),
            _ => None,
        })
    }

    const PEER: Ipv4Addr = Ipv4Addr::new(10, 0, 0, 2);
    const LOW_PEER: Ipv4Addr = Ipv4Addr::new(10, 0, 0, 0);

    #[test]
    fn skew_and_master_down_follow_the_rfc() {
        let m = Machine::new(params(100));
        // (256-100)*10cs/256 = 6.09375 cs
        assert_eq!(m.skew_time(), Duration::from_micros(60_937));
        assert_eq!(m.master_down_interval(), Duration::from_micros(360_937));
    }

    #[test]
    fn owner_takes_the_addresses_at_once() {
        let mut m = Machine::new(params(255));
        let a = m.start(Instant::now());
        assert!(has(&a, &Action::TakeAddresses));
        assert_eq!(m.state(), State::Master);
    }

    #[test]
    fn backup_takes_over_when_the_master_goes_silent() {
        let t0 = Instant::now();
        let mut m = Machine::new(params(100));
        m.start(t0);
        assert_eq!(m.state(), State::Backup);
        m.on_advert(t0 + cs(5), PEER, 200, 10);
        assert!(m.on_timer(t0 + cs(30)).is_empty());
        let down = m.deadline().unwrap();
        assert_eq!(down, t0 + cs(5) + m.master_down_interval());
        let a = m.on_timer(down);
        assert_eq!(to(&a), Some(State::Master));
        assert_eq!(a[0], Action::Advertise(100));
    }

    #[test]
    fn priority_zero_hands_over_after_the_skew() {
        let t0 = Instant::now();
        let mut m = Machine::new(params(100));
        m.start(t0);
        m.on_advert(t0, PEER, 200, 10);
        m.on_advert(t0 + cs(1), PEER, 0, 10);
        assert_eq!(m.deadline(), Some(t0 + cs(1) + m.skew_time()));
    }

    #[test]
    fn master_yields_to_higher_priority_and_to_equal_priority_from_a_higher_address() {
        let t0 = Instant::now();
        for (prio, from, yields) in [
            (150, PEER, true),
            (100, PEER, true),
            (100, LOW_PEER, false),
            (50, PEER, false),
        ] {
            let mut m = Machine::new(params(100));
            m.start(t0);
            m.on_timer(t0 + Duration::from_secs(1));
            assert_eq!(m.state(), State::Master);
            let a = m.on_advert(t0 + Duration::from_secs(2), from, prio, 10);
            assert_eq!(m.state() == State::Backup, yields, "{prio} from {from}");
            if yields {
                assert_eq!(a[..2], [Action::Advertise(0), Action::ReleaseAddresses]);
            } else {
                // a second Master is told at once and the addresses announced again
                assert!(has(&a, &Action::Announce));
            }
        }
    }

    #[test]
    fn a_master_told_priority_zero_announces_again() {
        let t0 = Instant::now();
        let mut m = Machine::new(params(100));
        m.start(t0);
        m.on_timer(t0 + Duration::from_secs(1));
        let a = m.on_advert(t0 + Duration::from_secs(2), PEER, 0, 10);
        assert_eq!(a, [Action::Advertise(100), Action::Announce]);
    }

    #[test]
    fn a_flood_of_lower_adverts_is_answered_once_an_interval() {
        let t0 = Instant::now();
        let mut m = Machine::new(params(100));
        m.start(t0);
        m.on_timer(t0 + Duration::from_secs(1));
        let t = t0 + Duration::from_secs(2);
        let answered: usize = (0..1000)
            .map(|i| m.on_advert(t + Duration::from_micros(i), PEER, 1, 10).len())
            .sum();
        assert_eq!(answered, 2, "one advert and one announce");
        assert_eq!(m.on_advert(t + cs(10), PEER, 1, 10).len(), 2);
    }

    #[test]
    fn preemption_nopreempt_and_preempt_delay() {
        let t0 = Instant::now();
        // preempting Backup ignores a lower Master's adverts and takes over
        let mut m = Machine::new(params(200));
        m.start(t0);
        let first_down = m.deadline().unwrap();
        m.on_advert(t0 + cs(5), PEER, 100, 10);
        assert_eq!(m.deadline(), Some(first_down));
        // nopreempt: it accepts the lower Master
        let mut n = Machine::new(Params {
            preempt: false,
            ..params(200)
        });
        n.start(t0);
        n.on_advert(t0 + cs(5), PEER, 100, 10);
        assert_eq!(n.deadline(), Some(t0 + cs(5) + n.master_down_interval()));
        // preempt_delay: accepts it while the delay runs, preempts after
        let mut d = Machine::new(Params {
            preempt_delay: Duration::from_secs(10),
            ..params(200)
        });
        d.start(t0);
        d.on_advert(t0 + cs(5), PEER, 100, 10);
        assert_eq!(d.deadline(), Some(t0 + cs(5) + d.master_down_interval()));
        let later = t0 + Duration::from_secs(11);
        let before = d.deadline();
        d.on_advert(later, PEER, 100, 10);
        assert_eq!(d.deadline(), before);
    }

    #[test]
    fn fault_releases_and_recovery_starts_again() {
        let t0 = Instant::now();
        let mut m = Machine::new(params(100));
        m.start(t0);
        m.on_timer(t0 + Duration::from_secs(1));
        let a = m.on_health(t0 + Duration::from_secs(2), 100, Some("link down".into()));
        assert_eq!(a[..2], [Action::Advertise(0), Action::ReleaseAddresses]);
        assert_eq!(m.state(), State::Fault);
        assert!(m.on_advert(t0, PEER, 50, 10).is_empty());
        let a = m.on_health(t0 + Duration::from_secs(3), 100, None);
        assert_eq!(to(&a), Some(State::Backup));
    }

    #[test]
    fn a_lowered_master_advertises_at_once() {
        let t0 = Instant::now();
        let mut m = Machine::new(params(200));
        m.start(t0);
        m.on_timer(t0 + Duration::from_secs(1));
        let a = m.on_health(t0 + Duration::from_secs(2), 150, None);
        assert_eq!(a, vec![Action::Advertise(150)]);
    }

    #[test]
    fn shutdown_advertises_priority_zero_first() {
        let t0 = Instant::now();
        let mut m = Machine::new(params(255));
        m.start(t0);
        let a = m.shutdown();
        assert_eq!(a[..2], [Action::Advertise(0), Action::ReleaseAddresses]);
        assert_eq!(m.state(), State::Initialize);
    }
}
