//! The `pgmon` binary: wires the command line to each role's `run` (collect, ingest, serve, alert) or to all of them (up).

mod embedded_nats;
mod reference;
mod replay;
mod targets_cli;
mod up;
mod users_cli;

use std::net::SocketAddr;

use anyhow::Context;
use clap::{CommandFactory, FromArgMatches, Parser, Subcommand};
use pgmon_alerter::{AlerterArgs, AlerterConfig};
use pgmon_collector::{CollectorArgs, CollectorConfig};
use pgmon_common::health::serve_health;
use pgmon_common::nats_setup::NatsArgs;
use pgmon_common::secret::SecretKeyArgs;
use pgmon_common::shutdown::cancel_on_signals;
use pgmon_common::telemetry::{init_logging, LogArgs};
use pgmon_ingester::{IngesterArgs, IngesterConfig, RebuildArgs};
use pgmon_query_api::{ServeArgs, ServeConfig};
use tokio_util::sync::CancellationToken;

/// mimalloc instead of glibc's malloc: ingestion allocates and frees millions of small strings
/// (decoded rows) and multi-megabyte Arrow buffers per second; with glibc those buffers are
/// mapped and unmapped on every batch. About 6% more rows per second end to end
/// (`cargo bench -p pgmon --bench storage`, which uses the same allocator).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// pgmon records what PostgreSQL servers are doing, second by second, and lets you look back at it.
#[derive(Parser)]
#[command(name = "pgmon", version, about)]
struct Cli {
    #[command(flatten)]
    log: LogArgs,
    #[command(subcommand)]
    command: Command,
}

// Parsed once at start: the size of the largest variant (`up`, every role's flags) costs nothing.
#[allow(clippy::large_enum_variant)]
#[derive(Subcommand)]
enum Command {
    /// Poll PostgreSQL targets and publish snapshots to NATS JetStream.
    Collect {
        #[command(flatten)]
        nats: NatsArgs,
        #[command(flatten)]
        collector: CollectorArgs,
        /// Address of this role's /healthz and /metrics.
        #[arg(long, env = "PGMON_HEALTH_LISTEN", default_value = "127.0.0.1:9101")]
        health_listen: SocketAddr,
    },
    /// Store snapshots from NATS JetStream in DuckDB files and answer history queries.
    Ingest {
        #[command(flatten)]
        nats: NatsArgs,
        #[command(flatten)]
        ingester: IngesterArgs,
        /// Address of this role's /healthz and /metrics.
        #[arg(long, env = "PGMON_HEALTH_LISTEN", default_value = "127.0.0.1:9102")]
        health_listen: SocketAddr,
    },
    /// Evaluate alerting rules on the snapshot stream and deliver their notifications.
    Alert {
        #[command(subcommand)]
        command: Option<AlertCommand>,
        #[command(flatten)]
        nats: NatsArgs,
        #[command(flatten)]
        alerter: AlerterArgs,
        /// Address of this role's /healthz and /metrics.
        #[arg(long, env = "PGMON_HEALTH_LISTEN", default_value = "127.0.0.1:9103")]
        health_listen: SocketAddr,
    },
    /// Re-ingest the whole snapshot stream into fresh partitions, as the live ingester stores it.
    Rebuild {
        #[command(flatten)]
        nats: NatsArgs,
        #[command(flatten)]
        rebuild: RebuildArgs,
    },
    /// Serve the web UI and the JSON API.
    Serve {
        #[command(flatten)]
        nats: NatsArgs,
        #[command(flatten)]
        serve: ServeArgs,
        #[command(flatten)]
        secret_key: SecretKeyArgs,
    },
    /// Manage the users of the web UI and API, and their API tokens.
    Users {
        #[command(flatten)]
        nats: NatsArgs,
        #[command(subcommand)]
        command: users_cli::UsersCommand,
    },
    /// Manage the monitored targets in the registry (NATS KV) while collectors run.
    Targets {
        #[command(flatten)]
        nats: NatsArgs,
        #[command(flatten)]
        secret_key: SecretKeyArgs,
        #[command(subcommand)]
        command: targets_cli::TargetsCommand,
    },
    /// Prints the snapshot events of a time window as JSON lines, as they are in the stream
    Replay {
        #[command(flatten)]
        nats: NatsArgs,
        #[command(flatten)]
        replay: replay::ReplayArgs,
    },
    /// Prints the configuration reference (Markdown): every command, flag, environment
    /// variable and targets-file key.
    Reference,
    /// Makes the NATS keys of pgmon's roles.
    Nats {
        #[command(subcommand)]
        command: NatsCommand,
    },
    /// Run collector, ingester, alerter and web UI in one process; starts a nats-server when none answers.
    Up {
        #[command(flatten)]
        nats: NatsArgs,
        /// Where each role's NATS key is (`<role>.nk`), made there when missing; the embedded
        /// nats-server accepts these keys only. Default: `<data dir>/nats-keys`.
        #[arg(long, env = "PGMON_NATS_KEYS_DIR", value_name = "DIR")]
        nats_keys_dir: Option<std::path::PathBuf>,
        #[command(flatten)]
        collector: CollectorArgs,
        #[command(flatten)]
        ingester: IngesterArgs,
        #[command(flatten)]
        serve: ServeArgs,
        #[command(flatten)]
        alerter: AlerterArgs,
    },
}

#[derive(Subcommand)]
enum AlertCommand {
    /// Checks an alerts file and prints its receivers and rules, or every problem with the
    /// field it is in (exit status 1); with --since, replays the stream's samples of that long
    /// through the rules and prints when each would have fired and resolved.
    Check {
        /// The alerts file (TOML).
        file: std::path::PathBuf,
        /// How far back to replay (e.g. "24h"); the stream keeps --stream-max-age.
        #[arg(long, value_parser = humantime::parse_duration)]
        since: Option<std::time::Duration>,
        #[command(flatten)]
        nats: NatsArgs,
    },
}

#[derive(Subcommand)]
enum NatsCommand {
    /// Writes a new NKey for every role into a directory: `<role>.nk` (the seed, readable by its
    /// owner only; give it to the role with --nats-nkey-file) and `public-keys.env` (the
    /// variables nats/single.conf and nats/cluster.conf read). Refuses to overwrite keys.
    Keys {
        /// The directory to write into.
        #[arg(long, value_name = "DIR")]
        out: std::path::PathBuf,
        /// Leave keys already in the directory as they are, add those of roles without one, and
        /// succeed (a first-start step, and the step after an upgrade that added a role).
        #[arg(long)]
        keep_existing: bool,
    },
    /// Prints the `authorization` block of a nats-server configuration for pgmon's roles (the
    /// shipped nats/authorization.conf), each role's public key read from `$PGMON_NKEY_<ROLE>`.
    Authorization,
}

fn main() -> std::process::ExitCode {
    let matches = Cli::command().get_matches();
    let nats_url_given = matches
        .subcommand_matches("up")
        .and_then(|up| up.value_source("url"))
        .is_some_and(|source| source != clap::parser::ValueSource::DefaultValue);
    let cli = Cli::from_arg_matches(&matches).unwrap_or_else(|error| error.exit());
    if let Command::Reference = cli.command {
        print!("{}", reference::markdown(&Cli::command()));
        return std::process::ExitCode::SUCCESS;
    }
    if let Err(error) = init_logging(&cli.log) {
        eprintln!("pgmon: {error}");
        return std::process::ExitCode::from(2);
    }
    let runtime = tokio::runtime::Runtime::new().expect("start the tokio runtime");
    match runtime.block_on(run(cli.command, nats_url_given)) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(error) => {
            tracing::error!(error = format!("{error:#}"), "pgmon stopped");
            eprintln!("pgmon: {error:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

async fn run(command: Command, nats_url_given: bool) -> anyhow::Result<()> {
    let shutdown = cancel_on_signals().context("cannot install signal handlers")?;
    match command {
        Command::Collect {
            nats,
            collector,
            health_listen,
        } => {
            let config = CollectorConfig::from_args(collector, nats)?;
            with_health(health_listen, pgmon_collector::ROLE, shutdown, |shutdown| {
                pgmon_collector::run(config, shutdown)
            })
            .await
        }
        Command::Ingest {
            nats,
            ingester,
            health_listen,
        } => {
            let config = IngesterConfig::from_args(ingester, nats);
            with_health(health_listen, pgmon_ingester::ROLE, shutdown, |shutdown| {
                pgmon_ingester::run(config, shutdown)
            })
            .await
        }
        Command::Alert {
            command: Some(AlertCommand::Check { file, since, nats }),
            ..
        } => check_alerts_file(&file, since, &nats).await,
        Command::Alert {
            command: None,
            nats,
            alerter,
            health_listen,
        } => {
            let config = AlerterConfig::from_args(alerter, nats)?;
            with_health(health_listen, pgmon_alerter::ROLE, shutdown, |shutdown| {
                pgmon_alerter::run(config, shutdown)
            })
            .await
        }
        Command::Rebuild { nats, rebuild } => {
            let data_dir = rebuild.data_dir.clone();
            let summary = pgmon_ingester::rebuild(IngesterConfig::for_rebuild(rebuild, nats), shutdown).await?;
            println!(
                "rebuilt {} snapshots ({} rows) up to stream sequence {} into {}",
                summary.snapshots,
                summary.rows,
                summary.last_sequence,
                data_dir.display()
            );
            Ok(())
        }
        Command::Serve { nats, serve, secret_key } => {
            let server = pgmon_query_api::bind(&ServeConfig::from_args(serve, nats, secret_key.load()?)).await?;
            println!("pgmon web UI: http://{}/", server.local_addr());
            Ok(server.serve(shutdown).await?)
        }
        Command::Targets { nats, secret_key, command } => targets_cli::run(nats, secret_key, command).await,
        Command::Users { nats, command } => users_cli::run(nats, command).await,
        Command::Reference => unreachable!("printed before the runtime starts"),
        Command::Replay { nats, replay } => {
            let printed = replay::run(nats, replay, &mut std::io::BufWriter::new(std::io::stdout().lock())).await?;
            tracing::info!(events = printed, "replay done");
            Ok(())
        }
        Command::Nats {
            command: NatsCommand::Keys { out, keep_existing },
        } => {
            if pgmon_common::nats_access::seed_file(&out, pgmon_common::nats_access::NatsRole::Collector).exists() {
                if keep_existing {
                    if pgmon_common::nats_access::missing_identities(&out) {
                        pgmon_common::nats_access::write_identities(&out)
                            .with_context(|| format!("cannot add NATS keys into {}", out.display()))?;
                        println!("{} already held NATS keys; added a key for each role without one", out.display());
                    } else {
                        println!("{} already holds NATS keys; left as they are", out.display());
                    }
                    return Ok(());
                }
                anyhow::bail!(
                    "{} already holds NATS keys; write new ones into another directory and swap them in (docs/security.md)",
                    out.display()
                );
            }
            pgmon_common::nats_access::write_identities(&out).with_context(|| format!("cannot write NATS keys into {}", out.display()))?;
            println!("wrote one NATS key per role and public-keys.env into {}", out.display());
            Ok(())
        }
        Command::Nats {
            command: NatsCommand::Authorization,
        } => {
            print!("{}", pgmon_common::nats_access::shipped_authorization_config());
            Ok(())
        }
        Command::Up {
            nats,
            nats_keys_dir,
            collector,
            ingester,
            serve,
            alerter,
        } => {
            up::run(
                up::UpArgs {
                    nats,
                    nats_url_given,
                    nats_keys_dir,
                    collector,
                    ingester,
                    serve,
                    alerter,
                },
                shutdown,
            )
            .await
        }
    }
}

/// `pgmon alert check`: the file's problems, or its rules; with `since`, what they would have
/// done over that much of the stream.
async fn check_alerts_file(file: &std::path::Path, since: Option<std::time::Duration>, nats: &NatsArgs) -> anyhow::Result<()> {
    let checked = pgmon_alerter::read_alerts_file(file)?;
    println!(
        "{}: {} receivers, {} rules, no problem found",
        file.display(),
        checked.receiver.len(),
        checked.rule.len()
    );
    for rule in &checked.rule {
        println!(
            "  rule {}: {} for {}",
            rule.name,
            rule.when.name(),
            humantime::format_duration(rule.for_duration.0)
        );
    }
    let Some(since) = since else { return Ok(()) };
    let jetstream = pgmon_common::nats_setup::connect_jetstream_as_tool(nats, pgmon_common::nats_access::NatsRole::Reader).await?;
    let found = pgmon_alerter::check::replay(&jetstream, &checked.rule, since).await?;
    println!("over the last {}:", humantime::format_duration(since));
    if found.is_empty() {
        println!("  no rule would have fired");
    }
    for transition in &found {
        let verb = match transition.kind {
            pgmon_contract::alert::NotificationKind::Firing => "fired",
            pgmon_contract::alert::NotificationKind::Repeat => "repeated",
            pgmon_contract::alert::NotificationKind::Resolved => "resolved",
        };
        let at = std::time::UNIX_EPOCH + std::time::Duration::from_micros(u64::try_from(transition.at_us).unwrap_or(0));
        println!(
            "  {} on {} would have {verb} at {}: {}",
            transition.rule,
            transition.target,
            humantime::format_rfc3339_seconds(at),
            transition.summary
        );
    }
    Ok(())
}

/// Runs a role beside its /healthz server; either failing stops both.
/// Runs a role beside its health server; `/readyz` answers 503 until the role says it is ready.
async fn with_health<Role, RoleError>(
    address: SocketAddr,
    role_name: &'static str,
    shutdown: CancellationToken,
    role: impl FnOnce(CancellationToken) -> Role,
) -> anyhow::Result<()>
where
    Role: std::future::Future<Output = Result<(), RoleError>>,
    RoleError: std::error::Error + Send + Sync + 'static,
{
    pgmon_common::health::starting(role_name);
    let health = tokio::spawn(serve_health(address, shutdown.clone()));
    let result = role(shutdown.clone()).await;
    shutdown.cancel();
    health.await.context("health server task")??;
    Ok(result?)
}
