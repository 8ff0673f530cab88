//! The `strata` binary: command line and wiring only.

mod alloc;
mod demo;
mod logging;

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::{CommandFactory, Parser, Subcommand};
use strata::etcd::EtcdSource;
use strata::import;
use strata::node::ConfigSource;
use strata::{EXIT_BAD_CONFIG, EXIT_NO_INPUT};

#[global_allocator]
static ALLOCATOR: alloc::Mimalloc = alloc::Mimalloc;

/// The config `strata run` reads when no `-c` is given.
const DEFAULT_CONFIG: &str = "/etc/strata/strata.toml";

#[derive(Parser)]
#[command(
    name = "strata",
    version,
    about = "VIP, load balancer, cache proxy and database proxy in one binary"
)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
    #[command(flatten)]
    log: logging::LogArgs,
}

#[derive(Subcommand)]
enum Command {
    /// Run the layers a config names (without -c: /etc/strata/strata.toml). With
    /// `-c etcd://HOST:PORT/KEY` the config is that etcd key, watched: each revision written
    /// there is checked and applied whole, as SIGHUP applies a file.
    Run {
        #[arg(short, long, value_name = "FILE|etcd://HOST:PORT/KEY")]
        config: Option<String>,
    },
    /// Validate config files without binding anything; exit 64 if one is wrong. Given the
    /// configs of several nodes (-c a.toml -c b.toml), also say where a VIP's tracked weight
    /// cannot move the address to the next node.
    Check {
        #[arg(short, long, value_name = "FILE", required = true)]
        config: Vec<PathBuf>,
    },
    /// Print the Strata config equivalent to another proxy's config file; what can't be
    /// translated is listed on stderr.
    Import {
        #[command(subcommand)]
        source: import::Source,
    },
    /// Print a completion script for a shell: `strata completions bash >
    /// /etc/bash_completion.d/strata`, `strata completions zsh > ~/.zfunc/_strata`,
    /// `strata completions fish > ~/.config/fish/completions/strata.fish`.
    Completions {
        #[arg(value_enum)]
        shell: clap_complete::Shell,
    },
    /// Start demo backends and a load balancer in front of them on loopback, and a cache pool
    /// over two redis-servers when redis-server is installed.
    Demo {
        /// Where the demo HTTP listener binds.
        #[arg(long, default_value = "127.0.0.1:8080")]
        listen: String,
        /// Where the admin listener binds.
        #[arg(long, default_value = "127.0.0.1:9900")]
        admin: String,
        /// Where the demo cache pool (two redis-servers, when redis-server is installed) binds.
        #[arg(long, default_value = "127.0.0.1:6380")]
        cache_listen: String,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Some(Command::Check { config }) => check_all(&config),
        Some(Command::Import { source }) => import::run(&source),
        Some(Command::Completions { shell }) => {
            // into memory first: clap_complete panics on a closed stdout (`| head`)
            let mut script = Vec::new();
            clap_complete::generate(shell, &mut Cli::command(), "strata", &mut script);
            match std::io::Write::write_all(&mut std::io::stdout(), &script) {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => ExitCode::SUCCESS,
                Err(e) => {
                    eprintln!("strata: cannot write the completion script: {e}");
                    ExitCode::FAILURE
                }
            }
        }
        Some(Command::Run { config }) => {
            if let Some(etcd) = config.as_deref().and_then(EtcdSource::parse) {
                let etcd = match etcd {
                    Ok(e) => e,
                    Err(why) => {
                        eprintln!("strata: {why}");
                        return ExitCode::from(EXIT_BAD_CONFIG);
                    }
                };
                logging::init(&cli.log);
                return run_from_etcd(etcd);
            }
            let Some(path) = config.map(PathBuf::from).or_else(default_config) else {
                // never fall back to the demo: a service unit that lost its -c must not serve it
                eprintln!(
                    "strata: no config file given and {DEFAULT_CONFIG} does not exist; \
                     pass `-c FILE`, or run `strata demo` for the built-in demo"
                );
                return ExitCode::from(EXIT_BAD_CONFIG);
            };
            let config = match load(&path) {
                Ok(c) => c,
                Err(code) => return code,
            };
            logging::init(&cli.log);
            strata::node::run_blocking(config, ConfigSource::File(path))
        }
        None => {
            let _ = Cli::command().write_help(&mut std::io::stderr());
            eprintln!("\nstrata: say what to do: `strata run -c FILE`, or `strata demo` to try it");
            ExitCode::from(EXIT_BAD_CONFIG)
        }
        Some(Command::Demo {
            listen,
            admin,
            cache_listen,
        }) => {
            logging::init(&cli.log);
            demo::run(&listen, &admin, &cache_listen)
        }
    }
}

/// Waits for the first valid revision of the key (on a small runtime of its own: the config
/// says how many workers the node's runtime gets), then runs the node, following the key.
fn run_from_etcd(etcd: EtcdSource) -> ExitCode {
    let first = match strata::node::runtime(1, std::time::Duration::ZERO) {
        Ok(rt) => rt.block_on(strata::node::first_from_etcd(&etcd)),
        Err(e) => Err(e.into()),
    };
    let (config, revision) = match first {
        Ok(Some(first)) => first,
        // stopped by a signal before any config ran
        Ok(None) => return ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("strata: {e:#}");
            return ExitCode::FAILURE;
        }
    };
    tracing::info!(source = %etcd.url(), revision, "config read from etcd");
    strata::node::run_blocking(config, ConfigSource::Etcd(etcd, revision))
}

/// `/etc/strata/strata.toml` when it is there; when whether it is can't be told (a directory
/// that may not be read), the path all the same, so that reading it names the error.
fn default_config() -> Option<PathBuf> {
    let path = Path::new(DEFAULT_CONFIG);
    match path.try_exists() {
        Ok(false) => None,
        Ok(true) | Err(_) => Some(path.to_path_buf()),
    }
}

/// Checks every file; then, across them, the weights of each virtual router's instances.
fn check_all(paths: &[PathBuf]) -> ExitCode {
    let mut code = ExitCode::SUCCESS;
    let mut good = Vec::new();
    for path in paths {
        match check(path) {
            Ok(c) => good.push((path.display().to_string(), c)),
            Err(e) => code = e,
        }
    }
    // one virtual router: the same vrid and the same first address, in the nodes' configs
    let routers: std::collections::BTreeSet<(u8, std::net::Ipv4Addr)> = good
        .iter()
        .flat_map(|(_, c)| {
            c.vip
                .iter()
                .filter_map(|v| Some((v.vrid, v.addresses.first()?.addr)))
        })
        .collect();
    for (vrid, addr) in routers {
        let peers: Vec<strata_vip::Peer<'_>> = good
            .iter()
            .flat_map(|(file, c)| {
                c.vip
                    .iter()
                    .filter(move |v| {
                        v.vrid == vrid && v.addresses.first().map(|a| a.addr) == Some(addr)
                    })
                    .map(move |instance| strata_vip::Peer { file, instance })
            })
            .collect();
        for warning in strata_vip::weights_that_cannot_move(&peers) {
            eprintln!("warning: {warning}");
        }
    }
    let weighted = good.iter().any(|(_, c)| {
        c.vip
            .iter()
            .any(|v| v.track.iter().any(|t| t.weight.is_some()))
    });
    if good.len() == 1 && weighted {
        eprintln!(
            "note: tracked weights only move the address if they take the Master below its \
             Backup's priority; check the nodes' configs together (-c a.toml -c b.toml) to have \
             that checked"
        );
    }
    code
}

fn check(path: &Path) -> Result<strata_config::Config, ExitCode> {
    match load(path) {
        Ok(c) => {
            println!(
                "{}: ok ({} http, {} tcp listener(s), {} cache pool(s), {} database listener(s), {} vip instance(s){})",
                path.display(),
                c.http.len(),
                c.tcp.len(),
                c.cache.len(),
                c.database.len(),
                c.vip.len(),
                if c.admin.is_some() { ", admin" } else { "" }
            );
            Ok(c)
        }
        Err(code) => Err(code),
    }
}

/// Loads a config and the TLS files it names, printing every problem to stderr on failure:
/// `strata run` and `strata check` refuse the same configs with the same exit code.
fn load(path: &Path) -> Result<strata_config::Config, ExitCode> {
    let config = read_config(path)?;
    let http = config
        .http
        .iter()
        .filter_map(|h| strata_lb::http::check_tls(h).err().map(|e| e.to_string()));
    let database = config
        .database
        .iter()
        .filter_map(|d| strata_db::check_tls(d).err().map(|e| e.to_string()));
    let tls: Vec<String> = http.chain(database).collect();
    if !tls.is_empty() {
        for e in &tls {
            eprintln!("{}: {e}", path.display());
        }
        return Err(ExitCode::from(EXIT_BAD_CONFIG));
    }
    Ok(config)
}

/// Reads and parses a config, printing every problem to stderr on failure.
fn read_config(path: &Path) -> Result<strata_config::Config, ExitCode> {
    match strata_config::load(path) {
        Ok(c) => Ok(c),
        Err(e @ strata_config::ConfigError::Read { .. }) => {
            eprintln!("strata: {e}");
            Err(ExitCode::from(EXIT_NO_INPUT))
        }
        Err(e) => {
            let n = e.problems().len();
            eprintln!("{e}");
            eprintln!(
                "strata: {} has {n} problem{}; nothing was started",
                path.display(),
                if n == 1 { "" } else { "s" }
            );
            Err(ExitCode::from(EXIT_BAD_CONFIG))
        }
    }
}
