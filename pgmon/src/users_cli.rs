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
    /// Create an API token acting as a user; it is printed once and stored only as a hash.
    Token {
        name: UserName,
        /// What the token is for (shown nowhere but kept with it), e.g. "grafana".
        #[arg(long, default_value = "api")]
        label: String,
    },
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
        UsersCommand::Token { name, label } => {
            let token = access.create_api_token(&name, &label).await?;
            println!("{token}");
            eprintln!("API token for {name}: send it as 'Authorization: Bearer <token>'; it is not shown again");
        }
    }
    Ok(())
}
