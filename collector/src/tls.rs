//! TLS to monitored servers with libpq's `sslmode` meanings, on rustls.
//!
//! tokio-postgres knows `disable`, `prefer` and `require` only, so pgmon takes `sslmode` and
//! `sslrootcert` out of the connection string itself, hands tokio-postgres `require` for the
//! verifying modes, and puts the verification in the rustls configuration:
//!
//! | sslmode | encrypted | certificate chain checked | host name checked |
//! | --- | --- | --- | --- |
//! | disable | no | – | – |
//! | prefer (libpq's default) | if the server offers TLS | no | no |
//! | require | yes | no | no |
//! | verify-ca | yes | yes | no |
//! | verify-full | yes | yes | yes |
//!
//! The roots are `sslrootcert` (PEM) when given, else the system's trusted certificates.

use std::path::PathBuf;
use std::sync::Arc;

use percent_encoding::percent_decode_str;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::client::WebPkiServerVerifier;
use rustls::crypto::CryptoProvider;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{CertificateError, ClientConfig, DigitallySignedStruct, RootCertStore, SignatureScheme};
use rustls_pki_types::pem::PemObject;
use tokio_postgres::config::SslMode;
use tokio_postgres_rustls::MakeRustlsConnect;

/// How much of the server's identity the collector checks.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Verification {
    /// Encrypt (when required or offered) without checking the certificate.
    #[default]
    None,
    /// Check the chain to a trusted root, not the host name.
    Chain,
    /// Check the chain and that the certificate names the host.
    ChainAndHostName,
}

/// The TLS part of a target's connection settings.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct TlsSettings {
    pub verification: Verification,
    /// `sslrootcert`: a PEM file of trusted roots.
    pub root_certificates: Option<PathBuf>,
}

#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("sslmode {0:?} is not one of disable, allow, prefer, require, verify-ca, verify-full")]
    UnknownMode(String),
    #[error("cannot read sslrootcert {path}: {reason}")]
    RootCertificates { path: PathBuf, reason: String },
    #[error("no trusted root certificates: give sslrootcert=FILE in the connection string")]
    NoRoots,
}

/// Takes `sslmode` and `sslrootcert` out of a connection string (key/value or URL) and returns
/// the string tokio-postgres can parse, with its SslMode and what to verify.
pub fn split_tls_options(dsn: &str) -> Result<(String, Option<SslMode>, TlsSettings), TlsError> {
    let (rest, options) = if dsn.starts_with("postgres://") || dsn.starts_with("postgresql://") {
        split_url_options(dsn)
    } else {
        split_key_value_options(dsn)
    };
    let mut settings = TlsSettings {
        root_certificates: options.root_certificates.map(PathBuf::from),
        ..TlsSettings::default()
    };
    let mode = match options.mode.as_deref() {
        None => None,
        Some("disable") => Some(SslMode::Disable),
        Some("allow" | "prefer") => Some(SslMode::Prefer),
        Some("require") => Some(SslMode::Require),
        Some("verify-ca") => {
            settings.verification = Verification::Chain;
            Some(SslMode::Require)
        }
        Some("verify-full") => {
            settings.verification = Verification::ChainAndHostName;
            Some(SslMode::Require)
        }
        Some(other) => return Err(TlsError::UnknownMode(other.to_owned())),
    };
    Ok((rest, mode, settings))
}

#[derive(Default)]
struct TlsOptions {
    mode: Option<String>,
    root_certificates: Option<String>,
}

fn split_url_options(url: &str) -> (String, TlsOptions) {
    let Some((base, query)) = url.split_once('?') else {
        return (url.to_owned(), TlsOptions::default());
    };
    let mut options = TlsOptions::default();
    let mut kept = Vec::new();
    for pair in query.split('&').filter(|pair| !pair.is_empty()) {
        let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
        let decoded = || percent_decode_str(value).decode_utf8_lossy().into_owned();
        match key {
            "sslmode" => options.mode = Some(decoded()),
            "sslrootcert" => options.root_certificates = Some(decoded()),
            _ => kept.push(pair),
        }
    }
    let rest = if kept.is_empty() {
        base.to_owned()
    } else {
        format!("{base}?{}", kept.join("&"))
    };
    (rest, options)
}

/// Splits `key=value` pairs as libpq does (values may be single-quoted, with backslash escapes)
/// and rebuilds the string without the TLS options, other values untouched.
fn split_key_value_options(dsn: &str) -> (String, TlsOptions) {
    let mut options = TlsOptions::default();
    let mut kept: Vec<String> = Vec::new();
    let mut characters = dsn.chars().peekable();
    loop {
        while characters.next_if(|c| c.is_whitespace()).is_some() {}
        let key: String = std::iter::from_fn(|| characters.next_if(|c| *c != '=' && !c.is_whitespace())).collect();
        if key.is_empty() && characters.peek().is_none() {
            break;
        }
        while characters.next_if(|c| c.is_whitespace()).is_some() {}
        characters.next_if_eq(&'=');
        while characters.next_if(|c| c.is_whitespace()).is_some() {}
        let mut raw = String::new();
        let mut value = String::new();
        if characters.next_if_eq(&'\'').is_some() {
            raw.push('\'');
            while let Some(c) = characters.next() {
                raw.push(c);
                match c {
                    '\\' => {
                        if let Some(escaped) = characters.next() {
                            raw.push(escaped);
                            value.push(escaped);
                        }
                    }
                    '\'' => break,
                    _ => value.push(c),
                }
            }
        } else {
            while let Some(c) = characters.next_if(|c| !c.is_whitespace()) {
                raw.push(c);
                if c == '\\' {
                    if let Some(escaped) = characters.next() {
                        raw.push(escaped);
                        value.push(escaped);
                    }
                } else {
                    value.push(c);
                }
            }
        }
        match key.as_str() {
            "sslmode" => options.mode = Some(value),
            "sslrootcert" => options.root_certificates = Some(value),
            _ => kept.push(format!("{key}={raw}")),
        }
    }
    (kept.join(" "), options)
}

/// The rustls connector for a target's settings.
pub fn connector(settings: &TlsSettings) -> Result<MakeRustlsConnect, TlsError> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .expect("ring supports the default protocol versions");
    let verifier: Arc<dyn ServerCertVerifier> = match settings.verification {
        Verification::None => Arc::new(AcceptAnyCertificate { provider }),
        verification => {
            let roots = trusted_roots(settings)?;
            let checks_everything = WebPkiServerVerifier::builder_with_provider(Arc::new(roots), provider)
                .build()
                .map_err(|_| TlsError::NoRoots)?;
            if verification == Verification::Chain {
                Arc::new(ChainOnly(checks_everything))
            } else {
                checks_everything
            }
        }
    };
    let config = builder.dangerous().with_custom_certificate_verifier(verifier).with_no_client_auth();
    Ok(MakeRustlsConnect::new(config))
}

fn trusted_roots(settings: &TlsSettings) -> Result<RootCertStore, TlsError> {
    let mut roots = RootCertStore::empty();
    match &settings.root_certificates {
        Some(path) => {
            let unreadable = |reason: String| TlsError::RootCertificates {
                path: path.clone(),
                reason,
            };
            let certificates = CertificateDer::pem_file_iter(path)
                .map_err(|error| unreadable(error.to_string()))?
                .collect::<Result<Vec<_>, _>>()
                .map_err(|error| unreadable(error.to_string()))?;
            let (added, _) = roots.add_parsable_certificates(certificates);
            if added == 0 {
                return Err(unreadable("no certificate in it".to_owned()));
            }
        }
        None => {
            roots.add_parsable_certificates(rustls_native_certs::load_native_certs().certs);
        }
    }
    if roots.is_empty() {
        return Err(TlsError::NoRoots);
    }
    Ok(roots)
}

/// `prefer` and `require`: encryption against eavesdropping, as libpq gives without a root
/// certificate; the handshake signature is still checked against the presented certificate.
#[derive(Debug)]
struct AcceptAnyCertificate {
    provider: Arc<CryptoProvider>,
}

impl ServerCertVerifier for AcceptAnyCertificate {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        certificate: &CertificateDer<'_>,
        signature: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(message, certificate, signature, &self.provider.signature_verification_algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        certificate: &CertificateDer<'_>,
        signature: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, certificate, signature, &self.provider.signature_verification_algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.provider.signature_verification_algorithms.supported_schemes()
    }
}

/// `verify-ca`: the full WebPKI check, except that the certificate need not name the host.
#[derive(Debug)]
struct ChainOnly(Arc<WebPkiServerVerifier>);

impl ServerCertVerifier for ChainOnly {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        match self
            .0
            .verify_server_cert(end_entity, intermediates, server_name, ocsp_response, now)
        {
            Err(rustls::Error::InvalidCertificate(CertificateError::NotValidForName | CertificateError::NotValidForNameContext { .. })) => {
                Ok(ServerCertVerified::assertion())
            }
            other => other,
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        certificate: &CertificateDer<'_>,
        signature: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.0.verify_tls12_signature(message, certificate, signature)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        certificate: &CertificateDer<'_>,
        signature: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.0.verify_tls13_signature(message, certificate, signature)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.supported_verify_schemes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_value_strings_lose_only_their_tls_options() {
        let (rest, mode, settings) =
            split_tls_options("host=db1 password='a b\\'c' sslmode=verify-full sslrootcert = '/etc/ca dir/root.pem' dbname=x").unwrap();
        assert_eq!(rest, "host=db1 password='a b\\'c' dbname=x");
        assert_eq!(mode, Some(SslMode::Require));
        assert_eq!(settings.verification, Verification::ChainAndHostName);
        assert_eq!(settings.root_certificates, Some(PathBuf::from("/etc/ca dir/root.pem")));
        let parsed: tokio_postgres::Config = rest.parse().unwrap();
        assert_eq!(parsed.get_password(), Some(&b"a b'c"[..]));
    }

    #[test]
    fn urls_lose_only_their_tls_options() {
        let (rest, mode, settings) =
            split_tls_options("postgresql://u@h:5433/db?application_name=x&sslmode=verify-ca&sslrootcert=%2Ftmp%2Fca.pem").unwrap();
        assert_eq!(rest, "postgresql://u@h:5433/db?application_name=x");
        assert_eq!(mode, Some(SslMode::Require));
        assert_eq!(settings.verification, Verification::Chain);
        assert_eq!(settings.root_certificates, Some(PathBuf::from("/tmp/ca.pem")));
        let (rest, mode, _) = split_tls_options("postgresql:///postgres?host=/var/run/postgresql").unwrap();
        assert_eq!((rest.as_str(), mode), ("postgresql:///postgres?host=/var/run/postgresql", None));
    }

    #[test]
    fn unknown_modes_are_named() {
        let error = split_tls_options("host=h sslmode=sometimes").unwrap_err();
        assert_eq!(
            error.to_string(),
            "sslmode \"sometimes\" is not one of disable, allow, prefer, require, verify-ca, verify-full"
        );
        assert_eq!(split_tls_options("host=h sslmode=disable").unwrap().1, Some(SslMode::Disable));
    }
}
