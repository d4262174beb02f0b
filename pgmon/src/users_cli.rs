//! `pgmon users`: add, list, change and remove the users of the web UI and API, and create API
//! tokens; passwords are read from standard input or the environment, never from arguments.

use std::io::BufRead;

use anyhow::{bail, Context};
use clap::{Args, Subcommand};
use pgmon_common::access::{AccessStore, Role, UserName};
use pgmon_common::nats_access::NatsRole;
use pgmon_common::nats_setup::{connect_jetstream_as_tool, NatsArgs};

#[derive(Subcommand)]
pub enum UsersCommand {
    /// Add a user (the password is read from standard input or PGMON_USER_PASSWORD).
    Add {
        name: UserName,
        #[arg(long, value_enum, default_value = "viewer")]
        role: Role,
        #[command(flatten)]
        password: UserPasswordArgs,
    },
    /// List the users and their roles.
    List,
    /// Set a user's password (read from standard input or PGMON_USER_PASSWORD).
    Passwd {
        name: UserName,
        #[command(flatten)]
        password: UserPasswordArgs,
    },
    /// Change a user's role.
    Role {
        name: UserName,
        #[arg(value_enum)]
        role: Role,
    },
    /// Remove a user; their sessions and API tokens stop working at once.
    Rm { name: UserName },
    /// Create an API token acting as a user; it is printed once and stored only as a hash. It
    /// ends when it expires, when it is revoked, or when the user's password or role changes.
    Token {
        name: UserName,
        /// What the token is for (listed by `pgmon users tokens`), e.g. "grafana".
        #[arg(long, default_value = "api")]
        label: String,
        /// How long the token works (e.g. 30d, 1y), or "never".
        #[arg(long, default_value = "90d", value_parser = parse_validity)]
        expires_in: Validity,
    },
    /// List the API tokens (of one user when given): id, user, label, created, last used, expiry.
    Tokens { name: Option<UserName> },
    /// Revoke one API token by its id (or the first 8 or more characters of it).
    Revoke { id: String },
}

/// How long a new token works.
#[derive(Clone, Copy)]
pub struct Validity(Option<std::time::Duration>);

fn parse_validity(text: &str) -> Result<Validity, String> {
    if text.eq_ignore_ascii_case("never") {
        return Ok(Validity(None));
    }
    humantime::parse_duration(text)
        .map(|duration| Validity(Some(duration)))
        .map_err(|error| format!("{error}: give a duration such as 30d or 1y, or never"))
}

/// A moment for the token list: UTC to the minute, or "-".
fn listed_time(at_us: Option<i64>) -> String {
    at_us
        .and_then(chrono::DateTime::from_timestamp_micros)
        .map_or_else(|| "-".to_owned(), |at| at.format("%Y-%m-%d %H:%M").to_string())
}

/// How a user's password is given: the environment, or the first line of standard input.
#[derive(Args)]
pub struct UserPasswordArgs {
    #[arg(long = "password-from-env", env = "PGMON_USER_PASSWORD", hide_env_values = true, hide = true)]
    from_environment: Option<String>,
}

impl UserPasswordArgs {
    fn read(&self) -> anyhow::Result<String> {
        if let Some(password) = &self.from_environment {
            return Ok(password.clone());
        }
        eprintln!("password (at least 12 characters), then Enter:");
        let mut line = String::new();
        std::io::stdin()
            .lock()
            .read_line(&mut line)
            .context("cannot read the password from standard input")?;
        let password = line.trim_end_matches(['\r', '\n']).to_owned();
        if password.is_empty() {
            bail!("no password given: type it on standard input or set PGMON_USER_PASSWORD");
        }
        Ok(password)
    }
}

pub async fn run(nats: NatsArgs, command: UsersCommand) -> anyhow::Result<()> {
    let jetstream = connect_jetstream_as_tool(&nats, NatsRole::Admin).await?;
    let access = AccessStore::open(&jetstream).await?;
    match command {
        UsersCommand::Add { name, role, password } => {
            access.add_user(&name, role, &password.read()?).await?;
            println!("added user {name} ({})", role.as_str());
        }
        UsersCommand::List => {
            println!("{:<32} ROLE", "NAME");
            for user in access.users().await? {
                println!("{:<32} {}", user.name, user.role.as_str());
            }
        }
        UsersCommand::Passwd { name, password } => {
            access.update_user(&name, None, Some(&password.read()?)).await?;
            println!("changed the password of {name}");
        }
        UsersCommand::Role { name, role } => {
            access.update_user(&name, Some(role), None).await?;
            println!("{name} is now {}", role.as_str());
        }
        UsersCommand::Rm { name } => {
            access.remove_user(&name).await?;
            println!("removed user {name}");
        }
        UsersCommand::Token { name, label, expires_in } => {
            let token = access.create_api_token(&name, &label, expires_in.0).await?;
            println!("{token}");
            eprintln!("API token for {name}: send it as 'Authorization: Bearer <token>'; it is not shown again");
        }
        UsersCommand::Tokens { name } => {
            println!(
                "{:<16}  {:<20} {:<20} {:<16}  {:<16}  EXPIRES",
                "ID", "USER", "LABEL", "CREATED", "LAST USED"
            );
            for token in access.api_tokens(name.as_ref()).await? {
                println!(
                    "{:<16}  {:<20} {:<20} {:<16}  {:<16}  {}",
                    token.id,
                    token.record.user,
                    token.record.label,
                    listed_time(Some(token.record.created_at_us)),
                    listed_time(token.record.last_used_at_us),
                    token
                        .record
                        .expires_at_us
                        .map_or_else(|| "never".to_owned(), |at| listed_time(Some(at)))
                );
            }
        }
        UsersCommand::Revoke { id } => {
            let revoked = access.revoke_api_token(&id).await?;
            println!("revoked the token {:?} of {}", revoked.label, revoked.user);
        }
    }
    Ok(())
}
