//! `pgmon targets`: add, list, edit and remove monitored targets in the registry (NATS KV) while
//! collectors run; passwords are sealed with the secret key before they leave this process.

use std::collections::BTreeMap;
use std::io::BufRead;

use anyhow::{bail, Context};
use clap::{Args, Subcommand};
use pgmon_collector::{parse_intervals, parse_label, TargetSpec};
use pgmon_common::nats_access::NatsRole;
use pgmon_common::nats_setup::{connect_jetstream_as_tool, NatsArgs};
use pgmon_common::registry::{Registry, TargetRecord};
use pgmon_common::secret::{SecretKey, SecretKeyArgs};
use pgmon_contract::target::TargetName;

#[derive(Subcommand)]
pub enum TargetsCommand {
    /// Register a target; collectors start sampling it within seconds.
    Add {
        name: TargetName,
        /// Connection string or URL without the password (e.g. "host=db1 user=pgmon dbname=postgres sslmode=require").
        #[arg(long)]
        dsn: String,
        #[command(flatten)]
        password: PasswordArgs,
        /// A label, KEY=VALUE (repeatable); collectors started with --only-labels take matching targets.
        #[arg(long = "label", value_parser = parse_label)]
        labels: Vec<(String, String)>,
        /// Register it without sampling it yet.
        #[arg(long)]
        disabled: bool,
        /// A sampling interval of this target, KIND=DURATION (activity=5s, objects=1h; repeatable).
        #[arg(long = "interval", value_parser = parse_label)]
        intervals: Vec<(String, String)>,
    },
    /// List the registered targets (never their passwords).
    List,
    /// Change a target; what is not given stays as it is.
    Edit {
        name: TargetName,
        #[arg(long)]
        dsn: Option<String>,
        #[command(flatten)]
        password: PasswordArgs,
        /// Remove the stored password.
        #[arg(long, conflicts_with_all = ["password", "password_stdin"])]
        clear_password: bool,
        #[arg(long, conflicts_with = "disable")]
        enable: bool,
        #[arg(long)]
        disable: bool,
        /// Replace the labels with these (KEY=VALUE, repeatable).
        #[arg(long = "label", value_parser = parse_label)]
        labels: Vec<(String, String)>,
        /// Set a sampling interval, KIND=DURATION (repeatable); KIND=default returns to the collector's.
        #[arg(long = "interval", value_parser = parse_label)]
        intervals: Vec<(String, String)>,
    },
    /// Remove a target; collectors stop sampling it within seconds (its history stays).
    Rm { name: TargetName },
    /// Print a new random secret key for PGMON_SECRET_KEY.
    GenerateKey,
    /// Seal every stored password again with the current secret key: after a key rotation
    /// (the old key given as --previous-secret-key), and for passwords stored before they were
    /// bound to their target's user, hosts, ports and TLS settings.
    Reseal,
}

/// How a password is given: never on the command line in clear.
#[derive(Args)]
pub struct PasswordArgs {
    /// The target's password (prefer --password-stdin; the environment variable is not shown in --help).
    #[arg(long, env = "PGMON_TARGET_PASSWORD", hide_env_values = true)]
    password: Option<String>,
    /// Read the password from the first line of standard input.
    #[arg(long, conflicts_with = "password")]
    password_stdin: bool,
}

impl PasswordArgs {
    fn read(&self) -> anyhow::Result<Option<String>> {
        if self.password_stdin {
            let mut line = String::new();
            std::io::stdin()
                .lock()
                .read_line(&mut line)
                .context("cannot read the password from standard input")?;
            return Ok(Some(line.trim_end_matches(['\r', '\n']).to_owned()));
        }
        Ok(self.password.clone())
    }
}

pub async fn run(nats: NatsArgs, secret_key: SecretKeyArgs, command: TargetsCommand) -> anyhow::Result<()> {
    if let TargetsCommand::GenerateKey = command {
        println!("{}", SecretKey::generate());
        return Ok(());
    }
    let jetstream = connect_jetstream_as_tool(&nats, NatsRole::Admin).await?;
    let registry = Registry::open(&jetstream).await?;
    match command {
        TargetsCommand::Add {
            name,
            dsn,
            password,
            labels,
            disabled,
            intervals,
        } => {
            if registry.get(&name).await?.is_some() {
                bail!("target {name} already exists: change it with pgmon targets edit {name}");
            }
            let target = TargetSpec::check_registry_dsn(&name, &dsn)?;
            let intervals: BTreeMap<String, String> = intervals.into_iter().collect();
            parse_intervals(name.as_str(), &intervals)?;
            let record = TargetRecord {
                sealed_password: seal(&secret_key, &target, password.read()?)?,
                name: name.clone(),
                dsn,
                enabled: !disabled,
                labels: labels.into_iter().collect(),
                intervals,
            };
            registry.put(&record).await?;
            println!("added target {name}");
        }
        TargetsCommand::List => {
            let (records, invalid) = registry.list().await?;
            println!("{:<24} {:<8} {:<8} {:<24} DSN", "NAME", "ENABLED", "PASSWORD", "LABELS");
            for record in records {
                let labels: Vec<String> = record.labels.iter().map(|(key, value)| format!("{key}={value}")).collect();
                println!(
                    "{:<24} {:<8} {:<8} {:<24} {}",
                    record.name,
                    if record.enabled { "yes" } else { "no" },
                    if record.sealed_password.is_some() { "stored" } else { "none" },
                    labels.join(","),
                    record.dsn
                );
            }
            for error in invalid {
                eprintln!("warning: {error}");
            }
        }
        TargetsCommand::Edit {
            name,
            dsn,
            password,
            clear_password,
            enable,
            disable,
            labels,
            intervals,
        } => {
            let Some(mut record) = registry.get(&name).await? else {
                bail!("target {name} does not exist: add it with pgmon targets add {name} --dsn ...");
            };
            let stored = TargetSpec::new(name.as_str(), &record.dsn)?;
            let edited = match dsn {
                Some(dsn) => {
                    let edited = TargetSpec::check_registry_dsn(&name, &dsn)?;
                    record.dsn = dsn;
                    edited
                }
                None => stored.clone(),
            };
            if clear_password {
                record.sealed_password = None;
            } else if let Some(sealed) = seal(&secret_key, &edited, password.read()?)? {
                record.sealed_password = Some(sealed);
            } else if record.sealed_password.is_some() && !stored.same_password_destination(&edited) {
                bail!("the user, host, port or TLS settings of {name} change: give the password again (--password-stdin) or --clear-password; a stored password is only sent where it was given for");
            }
            if enable || disable {
                record.enabled = enable;
            }
            if !labels.is_empty() {
                record.labels = labels.into_iter().collect::<BTreeMap<_, _>>();
            }
            for (kind, duration) in intervals {
                if duration == "default" {
                    record.intervals.remove(&kind);
                } else {
                    record.intervals.insert(kind, duration);
                }
            }
            parse_intervals(name.as_str(), &record.intervals)?;
            registry.put(&record).await?;
            println!("changed target {name}");
        }
        TargetsCommand::Rm { name } => {
            if !registry.remove(&name).await? {
                bail!("target {name} does not exist");
            }
            println!("removed target {name}");
        }
        TargetsCommand::Reseal => reseal(&registry, &secret_key).await?,
        TargetsCommand::GenerateKey => unreachable!("handled before connecting"),
    }
    Ok(())
}

/// `pgmon targets reseal`: every password the keys open is sealed with the current key and
/// bound to its destination; one that does not open is named and left as it is.
async fn reseal(registry: &Registry, secret_key: &SecretKeyArgs) -> anyhow::Result<()> {
    let Some(key) = secret_key.load()? else {
        bail!("resealing needs the current key: set PGMON_SECRET_KEY or --secret-key-file (and the old one as PGMON_PREVIOUS_SECRET_KEY)");
    };
    let (records, _) = registry.list().await?;
    let (mut resealed, mut current, mut failed) = (0, 0, 0);
    for mut record in records {
        let Some(sealed) = record.sealed_password.clone() else { continue };
        let target = TargetSpec::new(record.name.as_str(), &record.dsn)?;
        match key.resealed(&sealed, &target.password_binding()) {
            Ok(None) => current += 1,
            Ok(Some(sealed_again)) => {
                record.sealed_password = Some(sealed_again);
                registry.put(&record).await?;
                resealed += 1;
            }
            Err(error) => {
                eprintln!("error: target {}: {error}", record.name);
                failed += 1;
            }
        }
    }
    println!("resealed {resealed} passwords; {current} were sealed with the current key already");
    if failed > 0 {
        bail!("{failed} stored passwords do not open with the given keys and were left as they are");
    }
    Ok(())
}

fn seal(secret_key: &SecretKeyArgs, target: &TargetSpec, password: Option<String>) -> anyhow::Result<Option<String>> {
    let Some(password) = password else { return Ok(None) };
    let Some(key) = secret_key.load()? else {
        bail!("passwords are stored encrypted: set PGMON_SECRET_KEY or --secret-key-file (pgmon targets generate-key makes a key)");
    };
    Ok(Some(target.seal_password(&key, &password)))
}
