//! Opens a connection to a target the way tokio-postgres's own `Config::connect` does (each host
//! in turn, `hostaddr`, connect timeout, TCP keepalives and user timeout, `load_balance_hosts`,
//! `target_session_attrs`), over a socket pgmon opens itself, so that the clear-text guard sits
//! between the socket and the protocol: tokio-postgres offers no hook for that.

use std::fmt;
use std::net::SocketAddr;
use std::path::PathBuf;

use rand::seq::SliceRandom;
use socket2::{SockRef, TcpKeepalive};
use tokio::net::{TcpStream, UnixStream};
use tokio_postgres::config::{Host, LoadBalanceHosts, TargetSessionAttrs};
use tokio_postgres::tls::{MakeTlsConnect, TlsConnect};
use tokio_postgres::{Client, Config, Connection, SimpleQueryMessage};
use tokio_postgres_rustls::MakeRustlsConnect;
use tokio_util::either::Either;

use crate::clear_text_guard::{ClearTextGuard, ClearTextPasswordRefused, GuardedTlsConnect};
use crate::connection::{caused_by, ConnectError};
use crate::tls::{self, TlsSettings, Verification};

type TargetSocket = ClearTextGuard<Either<TcpStream, UnixStream>>;
type TargetTlsConnect = GuardedTlsConnect<<MakeRustlsConnect as MakeTlsConnect<TargetSocket>>::TlsConnect>;
/// The protocol half of a target connection, to be polled (spawned) for the client to work.
pub(crate) type TargetConnection = Connection<TargetSocket, <TargetTlsConnect as TlsConnect<TargetSocket>>::Stream>;

/// libpq's port when the connection string names none.
const DEFAULT_PORT: u16 = 5432;

/// Where one attempt connects.
enum Destination {
    Tcp(SocketAddr),
    /// The socket file in the directory the connection string names.
    Unix(PathBuf),
}

impl fmt::Display for Destination {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Destination::Tcp(address) => write!(formatter, "{address}"),
            Destination::Unix(path) => write!(formatter, "{}", path.display()),
        }
    }
}

/// Connects to the first host of the connection string that accepts pgmon, as libpq does;
/// the error is the last host's.
pub(crate) async fn open(config: &Config, tls_settings: &TlsSettings) -> Result<(Client, TargetConnection), ConnectError> {
    let mut make_tls = tls::connector(tls_settings)?;
    let certificate_verified = tls_settings.verification != Verification::None;
    let hosts = config.get_hosts();
    let host_addresses = config.get_hostaddrs();
    if hosts.is_empty() && host_addresses.is_empty() {
        return Err(ConnectError::Settings("it names no host nor hostaddr".to_owned()));
    }
    if !hosts.is_empty() && !host_addresses.is_empty() && hosts.len() != host_addresses.len() {
        return Err(ConnectError::Settings(format!(
            "it names {} hosts but {} hostaddrs",
            hosts.len(),
            host_addresses.len()
        )));
    }
    let host_count = hosts.len().max(host_addresses.len());
    let ports = config.get_ports();
    if ports.len() > 1 && ports.len() != host_count {
        return Err(ConnectError::Settings(format!(
            "it names {} ports for {host_count} hosts",
            ports.len()
        )));
    }
    let mut order: Vec<usize> = (0..host_count).collect();
    let random_order = config.get_load_balance_hosts() == LoadBalanceHosts::Random;
    if random_order {
        order.shuffle(&mut rand::rng());
    }
    let mut last_error = None;
    for index in order {
        let port = ports.get(index).or(ports.first()).copied().unwrap_or(DEFAULT_PORT);
        let host = hosts.get(index);
        // TLS verifies the host name even when hostaddr says where to connect.
        let tls_name = match host {
            Some(Host::Tcp(name)) => name.as_str(),
            _ => "",
        };
        let mut destinations = match (host_addresses.get(index), host) {
            (Some(address), _) => vec![Destination::Tcp(SocketAddr::new(*address, port))],
            (None, Some(Host::Tcp(name))) => match resolve(name, port).await {
                Ok(destinations) => destinations,
                Err(error) => {
                    last_error = Some(error);
                    continue;
                }
            },
            (None, Some(Host::Unix(directory))) => vec![Destination::Unix(directory.join(format!(".s.PGSQL.{port}")))],
            (None, None) => continue,
        };
        if random_order {
            destinations.shuffle(&mut rand::rng());
        }
        for destination in destinations {
            let tls = GuardedTlsConnect {
                inner: MakeTlsConnect::<TargetSocket>::make_tls_connect(&mut make_tls, tls_name).unwrap_or_else(|never| match never {}),
                certificate_verified,
            };
            match open_one(&destination, config, tls).await {
                Ok(opened) => return Ok(opened),
                Err(error) => last_error = Some(error),
            }
        }
    }
    Err(last_error.unwrap_or_else(|| ConnectError::Settings("it names no host nor hostaddr".to_owned())))
}

async fn resolve(name: &str, port: u16) -> Result<Vec<Destination>, ConnectError> {
    let resolve_error = |source| ConnectError::Resolve {
        host: name.to_owned(),
        source,
    };
    let addresses = tokio::net::lookup_host((name, port)).await.map_err(resolve_error)?;
    let destinations: Vec<Destination> = addresses.map(Destination::Tcp).collect();
    if destinations.is_empty() {
        return Err(resolve_error(std::io::Error::new(
            std::io::ErrorKind::NotFound,
            "the name has no address",
        )));
    }
    Ok(destinations)
}

async fn open_one(destination: &Destination, config: &Config, tls: TargetTlsConnect) -> Result<(Client, TargetConnection), ConnectError> {
    let socket_error = |source| ConnectError::Socket {
        destination: destination.to_string(),
        source,
    };
    let socket = connect_socket(destination, config).await.map_err(socket_error)?;
    let guarded = ClearTextGuard::on_socket(socket, config.get_ssl_mode(), config.get_ssl_negotiation());
    let (client, mut connection) = config.connect_raw(guarded, tls).await.map_err(|error| {
        if caused_by::<ClearTextPasswordRefused>(&error) {
            ConnectError::ClearTextPasswordRefused {
                destination: destination.to_string(),
            }
        } else {
            ConnectError::Connect(error)
        }
    })?;
    let wants_read_only = match config.get_target_session_attrs() {
        TargetSessionAttrs::ReadWrite => Some(false),
        TargetSessionAttrs::ReadOnly => Some(true),
        _ => None,
    };
    if let Some(wants_read_only) = wants_read_only {
        let answer = tokio::select! {
            answer = client.simple_query("SHOW transaction_read_only") => answer.map_err(ConnectError::Connect)?,
            ended = &mut connection => {
                return Err(match ended {
                    Err(error) => ConnectError::Connect(error),
                    Ok(()) => socket_error(std::io::ErrorKind::UnexpectedEof.into()),
                });
            }
        };
        let read_only = answer
            .iter()
            .any(|message| matches!(message, SimpleQueryMessage::Row(row) if row.get(0) == Some("on")));
        if read_only != wants_read_only {
            return Err(ConnectError::WrongSessionKind {
                destination: destination.to_string(),
                read_only,
            });
        }
    }
    Ok((client, connection))
}

/// Opens the socket with the connection string's timeout and TCP settings.
async fn connect_socket(destination: &Destination, config: &Config) -> std::io::Result<Either<TcpStream, UnixStream>> {
    let connecting = async {
        match destination {
            Destination::Tcp(address) => TcpStream::connect(address).await.map(Either::Left),
            Destination::Unix(path) => UnixStream::connect(path).await.map(Either::Right),
        }
    };
    let socket = match config.get_connect_timeout() {
        Some(limit) => tokio::time::timeout(*limit, connecting)
            .await
            .map_err(|_| std::io::Error::new(std::io::ErrorKind::TimedOut, "connection timed out"))??,
        None => connecting.await?,
    };
    if let Either::Left(tcp) = &socket {
        tcp.set_nodelay(true)?;
        let options = SockRef::from(tcp);
        if let Some(timeout) = config.get_tcp_user_timeout() {
            options.set_tcp_user_timeout(Some(*timeout))?;
        }
        if config.get_keepalives() {
            let mut keepalive = TcpKeepalive::new().with_time(config.get_keepalives_idle());
            if let Some(interval) = config.get_keepalives_interval() {
                keepalive = keepalive.with_interval(interval);
            }
            if let Some(retries) = config.get_keepalives_retries() {
                keepalive = keepalive.with_retries(retries);
            }
            options.set_tcp_keepalive(&keepalive)?;
        }
    }
    Ok(socket)
}
