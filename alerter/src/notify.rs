//! Delivering notifications: every alerter pulls from one durable consumer of the alert
//! stream's deliveries, so each delivery is attempted by one of them at a time; a failed one is
//! retried with back-off, and one that never goes through is kept in the stream as
//! undeliverable (`pgmon.alert.undeliverable.<receiver>`), never dropped.
//!
//! JetStream redelivers a delivery whose alerter died before acknowledging it, so a receiver
//! may, rarely, get a notification twice (an alerter killed between the receiver's answer and
//! the acknowledgement); the notification's `id` lets it drop the second.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use async_nats::jetstream::{self, consumer::pull, AckKind};
use futures::StreamExt;
use hmac::{KeyInit, Mac};
use pgmon_contract::alert::{AlertNotification, NotificationKind};
use pgmon_contract::subjects::{alert_undeliverable_subject, ALERT_STREAM, NOTIFIER_CONSUMER, UNDELIVERABLE_REASON_HEADER};
use tokio_util::sync::CancellationToken;

use crate::metrics::{metrics, DeliveryLabels};
use crate::rules::{Receiver, SmtpTls};
use crate::AlerterError;

/// How deliveries are retried.
#[derive(Clone, Copy, Debug)]
pub struct RetryPolicy {
    /// The wait after the first failure; each later wait is three times the one before.
    pub first_wait: Duration,
    /// The longest wait between two attempts.
    pub longest_wait: Duration,
    /// How long after the transition a delivery is given up and kept as undeliverable.
    pub give_up_after: Duration,
    /// How long one attempt may take.
    pub request_timeout: Duration,
}

impl RetryPolicy {
    /// The wait after the `attempt`-th failed attempt (from 1).
    pub fn wait_after(&self, attempt: u64) -> Duration {
        let exponent = u32::try_from(attempt.saturating_sub(1)).unwrap_or(u32::MAX).min(20);
        self.first_wait
            .saturating_mul(3_u32.saturating_pow(exponent))
            .min(self.longest_wait)
    }
}

/// A receiver ready to send: its secrets read from their files.
enum Destination {
    Webhook {
        url: String,
        signing_key: Option<Vec<u8>>,
    },
    Slack {
        url: String,
    },
    Email {
        // Boxed: the transport is large beside the other kinds' settings.
        transport: Box<lettre::AsyncSmtpTransport<lettre::Tokio1Executor>>,
        from: lettre::message::Mailbox,
        to: Vec<lettre::message::Mailbox>,
    },
    Alertmanager {
        url: String,
    },
}

/// The receivers of the alerts file with their secrets, by name.
pub struct Destinations(BTreeMap<String, Destination>);

impl Destinations {
    /// Reads each receiver's secret files; a file that cannot be read stops the start.
    pub fn load(receivers: &[Receiver], request_timeout: Duration) -> Result<Destinations, AlerterError> {
        let mut destinations = BTreeMap::new();
        for receiver in receivers {
            let destination = match receiver {
                Receiver::Webhook { url, secret_file, .. } => Destination::Webhook {
                    url: url.clone(),
                    signing_key: secret_file
                        .as_deref()
                        .map(|file| read_secret(receiver.name(), file).map(String::into_bytes))
                        .transpose()?,
                },
                Receiver::Slack { url_file, .. } => Destination::Slack {
                    url: read_secret(receiver.name(), url_file)?,
                },
                Receiver::Email { .. } => email_destination(receiver, request_timeout)?,
                Receiver::Alertmanager { url, .. } => Destination::Alertmanager {
                    url: format!("{}/api/v2/alerts", url.trim_end_matches('/')),
                },
            };
            destinations.insert(receiver.name().to_owned(), destination);
        }
        Ok(Destinations(destinations))
    }

    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.0.keys().map(String::as_str)
    }
}

fn email_destination(receiver: &Receiver, request_timeout: Duration) -> Result<Destination, AlerterError> {
    use lettre::transport::smtp::{authentication::Credentials, client};
    let Receiver::Email {
        name,
        smtp_host,
        smtp_port,
        tls,
        username,
        password_file,
        ca_file,
        from,
        to,
    } = receiver
    else {
        unreachable!("called for email receivers only");
    };
    let invalid = |reason: String| AlerterError::ReceiverSettings {
        receiver: name.clone(),
        reason,
    };
    let parameters = || -> Result<client::TlsParameters, AlerterError> {
        let mut builder = client::TlsParameters::builder(smtp_host.clone());
        if let Some(file) = ca_file {
            let pem = std::fs::read(file).map_err(|e| AlerterError::ReceiverSecret {
                receiver: name.clone(),
                file: file.clone(),
                reason: e.to_string(),
            })?;
            let certificate = client::Certificate::from_pem(&pem).map_err(|e| invalid(format!("{}: {e}", file.display())))?;
            builder = builder.add_root_certificate(certificate);
        }
        builder.build_rustls().map_err(|e| invalid(e.to_string()))
    };
    let security = match tls {
        SmtpTls::Starttls => client::Tls::Required(parameters()?),
        SmtpTls::Tls => client::Tls::Wrapper(parameters()?),
        SmtpTls::None => client::Tls::None,
    };
    let mut builder = lettre::AsyncSmtpTransport::<lettre::Tokio1Executor>::builder_dangerous(smtp_host.as_str())
        .port(smtp_port.unwrap_or(tls.default_port()))
        .tls(security)
        .timeout(Some(request_timeout));
    if let (Some(username), Some(file)) = (username, password_file) {
        builder = builder.credentials(Credentials::new(username.clone(), read_secret(name, file)?));
    }
    let mailbox = |address: &str| {
        address
            .parse()
            .map_err(|e| invalid(format!("{address:?} is not an email address: {e}")))
    };
    Ok(Destination::Email {
        transport: Box::new(builder.build()),
        from: mailbox(from)?,
        to: to.iter().map(|address| mailbox(address)).collect::<Result<_, _>>()?,
    })
}

fn read_secret(receiver: &str, file: &Path) -> Result<String, AlerterError> {
    let text = std::fs::read_to_string(file).map_err(|source| AlerterError::ReceiverSecret {
        receiver: receiver.to_owned(),
        file: file.to_owned(),
        reason: source.to_string(),
    })?;
    let secret = text.trim().to_owned();
    if secret.is_empty() {
        return Err(AlerterError::ReceiverSecret {
            receiver: receiver.to_owned(),
            file: file.to_owned(),
            reason: "the file is empty".to_owned(),
        });
    }
    Ok(secret)
}

/// `Pgmon-Signature` of a webhook body: `sha256=` and the hex HMAC-SHA256 of the body.
pub fn signature(key: &[u8], body: &[u8]) -> String {
    let mut mac = hmac::Hmac::<sha2::Sha256>::new_from_slice(key).expect("HMAC takes a key of any length");
    mac.update(body);
    let digest = mac.finalize().into_bytes();
    let hex: String = digest.iter().map(|byte| format!("{byte:02x}")).collect();
    format!("sha256={hex}")
}

/// The one line a chat receiver shows.
fn chat_text(notification: &AlertNotification) -> String {
    let links: Vec<String> = notification
        .links
        .iter()
        .map(|link| format!("<{}|{}>", link.url, link.title))
        .collect();
    format!("{}: {} {}", headline(notification), notification.summary, links.join(" · "))
}

/// The subject line of an email, and the first words of a chat message.
fn headline(notification: &AlertNotification) -> String {
    let state = match notification.kind {
        NotificationKind::Firing => "FIRING",
        NotificationKind::Repeat => "STILL FIRING",
        NotificationKind::Resolved => "RESOLVED",
    };
    format!(
        "[{state}] {} on {} ({})",
        notification.rule,
        notification.target,
        notification.severity.as_str()
    )
}

async fn send_email(
    transport: &lettre::AsyncSmtpTransport<lettre::Tokio1Executor>,
    from: &lettre::message::Mailbox,
    to: &[lettre::message::Mailbox],
    notification: &AlertNotification,
) -> Result<(), String> {
    use lettre::AsyncTransport;
    let mut builder = lettre::Message::builder()
        .from(from.clone())
        .subject(headline(notification))
        .header(lettre::message::header::ContentType::TEXT_PLAIN);
    for address in to {
        builder = builder.to(address.clone());
    }
    let mut text = format!("{}\n\n", notification.summary);
    for link in &notification.links {
        text.push_str(&format!("{}: {}\n", link.title, link.url));
    }
    text.push_str(&format!("\nNotification {}\n", notification.id));
    let message = builder.body(text).map_err(|e| format!("cannot write the email: {e}"))?;
    // lettre's errors say what the server answered; they never hold the password.
    transport
        .send(message)
        .await
        .map(|_| ())
        .map_err(|e| format!("the SMTP server refused or failed: {e}"))
}

/// The notification as Alertmanager v2 alerts: labels identify the alert (rule, target,
/// severity and the target's labels), `endsAt` tells when it is over (the resolution time, or
/// when a firing alert expires without a repeat).
pub fn alertmanager_alerts(notification: &AlertNotification) -> serde_json::Value {
    let time = |us: i64| {
        time::OffsetDateTime::from_unix_timestamp_nanos(i128::from(us) * 1000)
            .ok()
            .and_then(|moment| moment.format(&time::format_description::well_known::Rfc3339).ok())
    };
    let mut labels: serde_json::Map<String, serde_json::Value> = notification
        .labels
        .iter()
        .map(|(key, value)| (key.clone(), serde_json::Value::from(value.as_str())))
        .collect();
    labels.insert("alertname".to_owned(), notification.rule.as_str().into());
    labels.insert("target".to_owned(), notification.target.as_str().into());
    labels.insert("severity".to_owned(), notification.severity.as_str().into());
    let ends_at = match notification.kind {
        NotificationKind::Resolved => Some(notification.at_us),
        NotificationKind::Firing | NotificationKind::Repeat => notification.expires_at_us,
    };
    let mut alert = serde_json::json!({
        "labels": labels,
        "annotations": { "summary": notification.summary, "pgmon_notification_id": notification.id },
        "startsAt": time(notification.firing_since_us),
    });
    if let Some(ends_at) = ends_at.and_then(time) {
        alert["endsAt"] = ends_at.into();
    }
    if let Some(link) = notification.links.first() {
        alert["generatorURL"] = link.url.as_str().into();
    }
    serde_json::json!([alert])
}

/// Sends one notification; the error says what the receiver answered or why it could not.
async fn send(http: &reqwest::Client, destination: &Destination, notification: &AlertNotification) -> Result<(), String> {
    let request = match destination {
        Destination::Webhook { url, signing_key } => {
            let body = serde_json::to_vec(notification).expect("notifications always serialise");
            let mut request = http
                .post(url)
                .header(reqwest::header::CONTENT_TYPE, "application/json")
                .header("Pgmon-Notification-Id", &notification.id);
            if let Some(key) = signing_key {
                request = request.header("Pgmon-Signature", signature(key, &body));
            }
            request.body(body)
        }
        Destination::Slack { url } => http.post(url).json(&serde_json::json!({ "text": chat_text(notification) })),
        Destination::Alertmanager { url } => http.post(url).json(&alertmanager_alerts(notification)),
        Destination::Email { transport, from, to } => return send_email(transport, from, to, notification).await,
    };
    let response = request.send().await.map_err(|e| {
        // reqwest's message may carry the URL, and a Slack URL is a secret: say what failed only.
        if e.is_timeout() {
            "the receiver did not answer in time".to_owned()
        } else if e.is_connect() {
            "cannot connect to the receiver".to_owned()
        } else {
            "the request failed".to_owned()
        }
    })?;
    if response.status().is_success() {
        Ok(())
    } else {
        Err(format!("the receiver answered {}", response.status()))
    }
}

/// The HTTP client of the notifier: TLS with ring and the system's roots, as the rest of pgmon.
pub fn http_client(timeout: Duration) -> Result<reqwest::Client, AlerterError> {
    let mut roots = rustls::RootCertStore::empty();
    for certificate in rustls_native_certs::load_native_certs().certs {
        // A system certificate rustls cannot use is skipped, as the platform verifiers do.
        let _ = roots.add(certificate);
    }
    let tls = rustls::ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
        .with_safe_default_protocol_versions()
        .map_err(|e| AlerterError::HttpClient(e.to_string()))?
        .with_root_certificates(roots)
        .with_no_client_auth();
    reqwest::Client::builder()
        .use_preconfigured_tls(tls)
        .timeout(timeout)
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .map_err(|e| AlerterError::HttpClient(e.to_string()))
}

/// The shared durable consumer of deliveries; `nats/consumer-pgmon-notifier.json` holds the
/// same definition.
pub fn notifier_consumer_config() -> pull::Config {
    pull::Config {
        durable_name: Some(NOTIFIER_CONSUMER.to_owned()),
        description: Some("pgmon alerters delivering notifications (shared)".to_owned()),
        filter_subjects: vec!["pgmon.alert.deliver.>".to_owned()],
        ack_policy: jetstream::consumer::AckPolicy::Explicit,
        // An alerter that dies mid-delivery hands it to another after this long.
        ack_wait: Duration::from_secs(60),
        max_ack_pending: 1000,
        ..Default::default()
    }
}

/// Takes deliveries until shut down.
pub async fn deliver(
    jetstream: jetstream::Context,
    destinations: Arc<Destinations>,
    policy: RetryPolicy,
    shutdown: CancellationToken,
) -> Result<(), AlerterError> {
    let http = http_client(policy.request_timeout)?;
    let stream = jetstream
        .get_stream(ALERT_STREAM)
        .await
        .map_err(|e| AlerterError::Consumer(e.to_string()))?;
    let consumer = stream
        .get_or_create_consumer(NOTIFIER_CONSUMER, notifier_consumer_config())
        .await
        .map_err(|e| AlerterError::Consumer(e.to_string()))?;
    let mut messages = consumer.messages().await.map_err(|e| AlerterError::Consumer(e.to_string()))?;
    loop {
        let message = tokio::select! {
            biased;
            () = shutdown.cancelled() => return Ok(()),
            message = messages.next() => message,
        };
        let message = match message {
            Some(Ok(message)) => message,
            Some(Err(error)) => {
                tracing::warn!(error = %error, "reading deliveries failed; retrying");
                tokio::time::sleep(Duration::from_secs(1)).await;
                continue;
            }
            None => return Err(AlerterError::Consumer("the delivery consumer ended".to_owned())),
        };
        deliver_one(&jetstream, &http, &destinations, policy, message).await;
    }
}

async fn deliver_one(
    jetstream: &jetstream::Context,
    http: &reqwest::Client,
    destinations: &Destinations,
    policy: RetryPolicy,
    message: jetstream::Message,
) {
    let receiver = message.subject.as_str().rsplit('.').next().unwrap_or_default().to_owned();
    let (attempt, published) = match message.info() {
        Ok(info) => (info.delivered.max(1) as u64, info.published),
        Err(_) => (1, time::OffsetDateTime::now_utc()),
    };
    let outcome = match serde_json::from_slice::<AlertNotification>(&message.payload) {
        Err(error) => Err(format!("not a notification: {error}")),
        Ok(notification) => match destinations.0.get(&receiver) {
            None => Err(format!("no receiver is named {receiver:?} in this alerter's alerts file")),
            Some(destination) => send(http, destination, &notification).await,
        },
    };
    let count = |outcome: &'static str| {
        metrics()
            .notifications
            .get_or_create(&DeliveryLabels {
                receiver: receiver.clone(),
                outcome,
            })
            .inc();
    };
    let reason = match outcome {
        Ok(()) => {
            count("sent");
            tracing::info!(receiver = %receiver, attempt, "notification delivered");
            if let Err(error) = message.double_ack().await {
                tracing::warn!(receiver = %receiver, error = %error, "delivered, but the acknowledgement failed: the receiver may get it again");
            }
            return;
        }
        Err(reason) => reason,
    };
    let age = time::OffsetDateTime::now_utc() - published;
    if age.unsigned_abs() < policy.give_up_after {
        count("failed");
        let wait = policy.wait_after(attempt);
        tracing::warn!(receiver = %receiver, attempt, retry_in = ?wait, reason = %reason, "notification not delivered; will retry");
        if let Err(error) = message.ack_with(AckKind::Nak(Some(wait))).await {
            tracing::warn!(receiver = %receiver, error = %error, "cannot ask for a later retry; it comes after the ack wait");
        }
        return;
    }
    count("undeliverable");
    let mut headers = async_nats::HeaderMap::new();
    headers.insert(UNDELIVERABLE_REASON_HEADER, reason.as_str());
    let kept = jetstream
        .publish_with_headers(alert_undeliverable_subject(&receiver), headers, message.payload.clone())
        .await;
    let stored = match kept {
        Ok(ack) => ack.await.is_ok(),
        Err(_) => false,
    };
    if stored {
        tracing::error!(receiver = %receiver, attempts = attempt, reason = %reason, "notification given up and kept as undeliverable");
        let _ = message.ack_with(AckKind::Term).await;
    } else {
        tracing::warn!(receiver = %receiver, "cannot keep an undeliverable notification yet; retrying it");
        let _ = message.ack_with(AckKind::Nak(Some(policy.longest_wait))).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retries_wait_longer_each_time_up_to_the_longest() {
        let policy = RetryPolicy {
            first_wait: Duration::from_secs(5),
            longest_wait: Duration::from_secs(600),
            give_up_after: Duration::from_secs(86_400),
            request_timeout: Duration::from_secs(10),
        };
        let waits: Vec<u64> = (1..=6).map(|attempt| policy.wait_after(attempt).as_secs()).collect();
        assert_eq!(waits, vec![5, 15, 45, 135, 405, 600]);
    }

    #[test]
    fn the_signature_is_hmac_sha256_of_the_body() {
        // RFC 4231, test case 2.
        assert_eq!(
            signature(b"Jefe", b"what do ya want for nothing?"),
            "sha256=5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
    }
}
