//! What an instance's fitness depends on: its own interface's link, the `track` entries (other
//! interfaces, other layers of this process, commands), folded into one priority and, when a
//! weightless entry fails, a Fault.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use strata_config::{Track, Tracked, VipInstance};
use tokio::process::Command;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use crate::link;

/// Asks the node whether a listener of another layer can serve: `(layer, listener)` to
/// `Some(has a backend that can take traffic)`, `None` when no such listener runs.
pub type Probe = Arc<dyn Fn(&str, &str) -> Option<bool> + Send + Sync>;

/// How often links and layers are looked at.
const LOOK_EVERY: Duration = Duration::from_millis(50);

/// The instance's health, as the tracker last found it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Health {
    /// The configured priority moved by the weights of the entries that count now.
    pub priority: u8,
    /// Why the instance must be in Fault, if it must.
    pub fault: Option<String>,
    /// Each entry (the interface first) and whether it is healthy.
    pub checks: Vec<(String, bool, Option<i32>)>,
}

/// One watched entry and its latest result.
struct Entry {
    label: String,
    weight: Option<i32>,
    what: Watched,
}

enum Watched {
    Interface(String),
    Layer(String, String),
    /// Healthy as a command task last found it.
    Command(Arc<AtomicBool>),
}

/// Starts watching what `config` names; the receiver holds the health found so far (found
/// once before this returns) and changes as it changes, until `stop`.
pub fn start(
    config: &VipInstance,
    probe: Probe,
    stop: CancellationToken,
) -> watch::Receiver<Health> {
    let mut entries = vec![Entry {
        label: format!("interface:{}", config.interface),
        weight: None,
        what: Watched::Interface(config.interface.clone()),
    }];
    for Track { what, weight } in &config.track {
        let watched = match what {
            Tracked::Interface(name) => Watched::Interface(name.clone()),
            Tracked::Layer { layer, listener } => Watched::Layer(layer.clone(), listener.clone()),
            Tracked::Command {
                command,
                interval,
                timeout,
                fall,
                rise,
            } => {
                // failing until its first run says otherwise: a check that can't run must not
                // let a node take the addresses at start
                let ok = Arc::new(AtomicBool::new(false));
                tokio::spawn(run_command(
                    config.name.clone(),
                    command.clone(),
                    *interval,
                    *timeout,
                    (*fall, *rise),
                    ok.clone(),
                    stop.clone(),
                ));
                Watched::Command(ok)
            }
        };
        entries.push(Entry {
            label: what.label(),
            weight: *weight,
            what: watched,
        });
    }
    let base = config.priority;
    let (tx, rx) = watch::channel(evaluate(base, &entries, &probe));
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(LOOK_EVERY);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = stop.cancelled() => return,
                _ = tick.tick() => {}
            }
            let health = evaluate(base, &entries, &probe);
            tx.send_if_modified(|h| {
                let changed = *h != health;
                *h = health;
                changed
            });
        }
    });
    rx
}

fn evaluate(base: u8, entries: &[Entry], probe: &Probe) -> Health {
    let mut priority = i32::from(base);
    let mut fault = None;
    let mut checks = Vec::with_capacity(entries.len());
    for e in entries {
        let ok = match &e.what {
            Watched::Interface(name) => link::is_up(name),
            Watched::Layer(layer, listener) => probe(layer, listener).unwrap_or(false),
            Watched::Command(ok) => ok.load(Ordering::Relaxed),
        };
        match (e.weight, ok) {
            // keepalived's rule: a negative weight counts while the check fails, a positive
            // one while it succeeds
            (Some(w), false) if w < 0 => priority += w,
            (Some(w), true) if w > 0 => priority += w,
            (None, false) if fault.is_none() => {
                fault = Some(match &e.what {
                    Watched::Interface(name) => format!("interface {name} is down"),
                    Watched::Layer(layer, listener) => {
                        format!("{layer} listener \"{listener}\" has no backend that can serve")
                    }
                    Watched::Command(_) => format!("tracked {} fails", e.label),
                })
            }
            _ => {}
        }
        checks.push((e.label.clone(), ok, e.weight));
    }
    Health {
        priority: priority.clamp(1, 255) as u8,
        fault,
        checks,
    }
}

/// Runs `command` every `interval` until `stop`, flipping `ok` after `fall` failures or `rise`
/// successes in a row.
async fn run_command(
    instance: String,
    command: String,
    interval: Duration,
    timeout: Duration,
    (fall, rise): (u32, u32),
    ok: Arc<AtomicBool>,
    stop: CancellationToken,
) {
    let mut streak: (bool, u32) = (false, 0);
    let mut first = true;
    loop {
        let passed = match run_once(&command, timeout).await {
            Ok(()) => true,
            Err(why) => {
                tracing::debug!(vip = %instance, %command, %why, "track command failed");
                false
            }
        };
        streak = if streak.0 == passed {
            (passed, streak.1.saturating_add(1))
        } else {
            (passed, 1)
        };
        let was = ok.load(Ordering::Relaxed);
        let now = if first {
            passed
        } else if passed {
            was || streak.1 >= rise
        } else {
            was && streak.1 < fall
        };
        first = false;
        if now != was {
            tracing::info!(vip = %instance, %command, healthy = now, "track command changed");
            ok.store(now, Ordering::Relaxed);
        }
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = tokio::time::sleep(interval) => {}
        }
    }
}

/// One run of a command through `sh -c`: Ok when it exits 0 within `timeout`.
pub(crate) async fn run_once(command: &str, timeout: Duration) -> Result<(), String> {
    run_shell(command, &[], timeout).await
}

/// Runs `command` through `sh -c` with `args` as its positional arguments ($1, $2, ...), with
/// no stdin, killed after `timeout`.
pub(crate) async fn run_shell(
    command: &str,
    args: &[&str],
    timeout: Duration,
) -> Result<(), String> {
    let script = if args.is_empty() {
        command.to_string()
    } else {
        format!("{command} \"$@\"")
    };
    let child = Command::new("/bin/sh")
        .arg("-c")
        .arg(script)
        .arg("strata")
        .args(args)
        .stdin(std::process::Stdio::null())
        // its own process group, so a timeout kills what it started too (a pipeline, curl)
        .process_group(0)
        .kill_on_drop(true)
        .spawn()
        .map_err(|e| format!("cannot run: {e}"))?;
    let mut child = Group(child);
    match tokio::time::timeout(timeout, child.0.wait()).await {
        Ok(Ok(status)) if status.success() => Ok(()),
        Ok(Ok(status)) => Err(format!("exited with {status}")),
        Ok(Err(e)) => Err(format!("cannot wait: {e}")),
        Err(_) => Err(format!("did not finish within {timeout:?}")),
    }
}

/// A child in a process group of its own; dropped before it exits (a timeout, or the task
/// that waits on it stopped), the whole group is killed.
struct Group(tokio::process::Child);

impl Drop for Group {
    #[allow(unsafe_code)]
    fn drop(&mut self) {
        if let (Ok(None), Some(pid)) = (self.0.try_wait(), self.0.id()) {
            // SAFETY: killpg(2) on the process group our child leads (its pid, from
            // process_group(0)); it has not been reaped, so the id is still ours.
            unsafe { libc::killpg(pid as libc::pid_t, libc::SIGKILL) };
        }
    }
}
