//! Keeps a target's password from travelling in clear text: a stream wrapper that reads the
//! server's authentication requests before tokio-postgres does, and breaks the connection when
//! the server asks for the password in clear text over a connection that is not TLS-verified.
//!
//! tokio-postgres answers `AuthenticationCleartextPassword` whenever it holds a password and has
//! no setting like libpq's `require_auth`. Without this guard, any host a target's connection
//! string can be pointed at, or anyone in the middle of an unverified connection, would learn the
//! stored password just by asking for it. SCRAM never reveals the password itself.

use std::io;
use std::pin::Pin;
use std::task::{ready, Context, Poll};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio_postgres::config::{SslMode, SslNegotiation};
use tokio_postgres::tls::{ChannelBinding, TlsConnect, TlsStream};

/// The reason a guarded stream breaks the connection, kept as the `io::Error`'s inner error so
/// the connect path can tell it from a network failure.
#[derive(Debug, thiserror::Error)]
#[error("the server asked for the password in clear text over a connection whose TLS certificate is not verified")]
pub(crate) struct ClearTextPasswordRefused;

/// `AuthenticationCleartextPassword`'s code in an `R` message.
const CLEAR_TEXT_PASSWORD_REQUEST: u32 = 3;
/// `AuthenticationOk`'s code: authentication is over, nothing later needs reading.
const AUTHENTICATION_OK: u32 = 0;

/// Where the guard is in the server's byte stream.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Inspection {
    /// The server's one-byte answer to pgmon's `SSLRequest`: `S` hands the rest to TLS (guarded
    /// inside it), anything else continues in the clear.
    AwaitingTlsAnswer,
    /// A message's type byte and length.
    Header { bytes: [u8; 5], filled: usize },
    /// The code of an authentication request, and how much of its body follows the code.
    AuthenticationCode { bytes: [u8; 4], filled: usize, rest_of_body: u32 },
    /// The rest of a message nobody needs to read.
    Body { remaining: u32 },
    /// The server asked for the password in clear text: every later read fails too.
    Refused,
    /// Authentication is over, TLS took the stream, or clear text is allowed here.
    Finished,
}

impl Inspection {
    const NEXT_HEADER: Inspection = Inspection::Header { bytes: [0; 5], filled: 0 };

    fn after_body(remaining: u32) -> Inspection {
        if remaining == 0 {
            Inspection::NEXT_HEADER
        } else {
            Inspection::Body { remaining }
        }
    }
}

/// A stream that fails the read carrying a clear-text password request, before tokio-postgres
/// sees it (so it never answers); every other byte passes untouched.
pub(crate) struct ClearTextGuard<S> {
    inner: S,
    inspection: Inspection,
}

impl<S> ClearTextGuard<S> {
    /// Guards the socket itself. With TLS negotiated the guard steps aside after the server's
    /// `S` (the stream inside TLS carries its own guard); in the clear it reads every
    /// authentication request.
    pub(crate) fn on_socket(inner: S, ssl_mode: SslMode, negotiation: SslNegotiation) -> ClearTextGuard<S> {
        let inspection = match (ssl_mode, negotiation) {
            (SslMode::Disable, _) => Inspection::NEXT_HEADER,
            // Direct negotiation starts TLS at once (tokio-postgres refuses it with `prefer`).
            (_, SslNegotiation::Direct) => Inspection::Finished,
            _ => Inspection::AwaitingTlsAnswer,
        };
        ClearTextGuard { inner, inspection }
    }

    /// Guards the stream inside TLS: a verified certificate is the one case where the password
    /// may be sent in clear text, since only the intended server can read it.
    pub(crate) fn inside_tls(inner: S, certificate_verified: bool) -> ClearTextGuard<S> {
        let inspection = if certificate_verified {
            Inspection::Finished
        } else {
            Inspection::NEXT_HEADER
        };
        ClearTextGuard { inner, inspection }
    }

    /// Follows the message framing over the bytes the server just sent.
    fn inspect(&mut self, mut bytes: &[u8]) -> Result<(), ClearTextPasswordRefused> {
        while !bytes.is_empty() {
            self.inspection = match self.inspection {
                Inspection::Finished => return Ok(()),
                Inspection::Refused => return Err(ClearTextPasswordRefused),
                Inspection::AwaitingTlsAnswer => {
                    let answer = bytes[0];
                    bytes = &bytes[1..];
                    if answer == b'S' {
                        Inspection::Finished
                    } else {
                        Inspection::NEXT_HEADER
                    }
                }
                Inspection::Header { bytes: mut header, filled } => {
                    let taken = (header.len() - filled).min(bytes.len());
                    header[filled..filled + taken].copy_from_slice(&bytes[..taken]);
                    bytes = &bytes[taken..];
                    if filled + taken < header.len() {
                        Inspection::Header {
                            bytes: header,
                            filled: filled + taken,
                        }
                    } else {
                        // The length counts itself but not the type byte.
                        let body = u32::from_be_bytes([header[1], header[2], header[3], header[4]]).saturating_sub(4);
                        if header[0] == b'R' && body >= 4 {
                            Inspection::AuthenticationCode {
                                bytes: [0; 4],
                                filled: 0,
                                rest_of_body: body - 4,
                            }
                        } else {
                            Inspection::after_body(body)
                        }
                    }
                }
                Inspection::AuthenticationCode {
                    bytes: mut code,
                    filled,
                    rest_of_body,
                } => {
                    let taken = (code.len() - filled).min(bytes.len());
                    code[filled..filled + taken].copy_from_slice(&bytes[..taken]);
                    bytes = &bytes[taken..];
                    if filled + taken < code.len() {
                        Inspection::AuthenticationCode {
                            bytes: code,
                            filled: filled + taken,
                            rest_of_body,
                        }
                    } else {
                        match u32::from_be_bytes(code) {
                            CLEAR_TEXT_PASSWORD_REQUEST => {
                                self.inspection = Inspection::Refused;
                                return Err(ClearTextPasswordRefused);
                            }
                            AUTHENTICATION_OK => Inspection::Finished,
                            _ => Inspection::after_body(rest_of_body),
                        }
                    }
                }
                Inspection::Body { remaining } => {
                    let skipped = bytes.len().min(remaining as usize);
                    bytes = &bytes[skipped..];
                    Inspection::after_body(remaining - skipped as u32)
                }
            };
        }
        match self.inspection {
            Inspection::Refused => Err(ClearTextPasswordRefused),
            _ => Ok(()),
        }
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for ClearTextGuard<S> {
    fn poll_read(self: Pin<&mut Self>, context: &mut Context<'_>, buffer: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        let guard = self.get_mut();
        let already_filled = buffer.filled().len();
        ready!(Pin::new(&mut guard.inner).poll_read(context, buffer))?;
        if let Err(refused) = guard.inspect(&buffer.filled()[already_filled..]) {
            // The request never reaches tokio-postgres, so it never answers it.
            buffer.set_filled(already_filled);
            return Poll::Ready(Err(io::Error::new(io::ErrorKind::PermissionDenied, refused)));
        }
        Poll::Ready(Ok(()))
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for ClearTextGuard<S> {
    fn poll_write(self: Pin<&mut Self>, context: &mut Context<'_>, bytes: &[u8]) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().inner).poll_write(context, bytes)
    }

    fn poll_write_vectored(self: Pin<&mut Self>, context: &mut Context<'_>, buffers: &[io::IoSlice<'_>]) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().inner).poll_write_vectored(context, buffers)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, context: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_flush(context)
    }

    fn poll_shutdown(self: Pin<&mut Self>, context: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_shutdown(context)
    }
}

impl<S: TlsStream + Unpin> TlsStream for ClearTextGuard<S> {
    fn channel_binding(&self) -> ChannelBinding {
        self.inner.channel_binding()
    }
}

/// A TLS connector whose streams carry the guard inside TLS.
pub(crate) struct GuardedTlsConnect<T> {
    pub(crate) inner: T,
    pub(crate) certificate_verified: bool,
}

impl<S, T> TlsConnect<S> for GuardedTlsConnect<T>
where
    T: TlsConnect<S>,
    T::Future: Unpin,
{
    type Stream = ClearTextGuard<T::Stream>;
    type Error = T::Error;
    type Future = GuardedHandshake<T::Future>;

    fn connect(self, stream: S) -> Self::Future {
        GuardedHandshake {
            handshake: self.inner.connect(stream),
            certificate_verified: self.certificate_verified,
        }
    }
}

/// The TLS handshake, whose stream comes out guarded.
pub(crate) struct GuardedHandshake<F> {
    handshake: F,
    certificate_verified: bool,
}

impl<F, S, E> std::future::Future for GuardedHandshake<F>
where
    F: std::future::Future<Output = Result<S, E>> + Unpin,
{
    type Output = Result<ClearTextGuard<S>, E>;

    fn poll(self: Pin<&mut Self>, context: &mut Context<'_>) -> Poll<Self::Output> {
        let handshake = self.get_mut();
        let stream = ready!(Pin::new(&mut handshake.handshake).poll(context))?;
        Poll::Ready(Ok(ClearTextGuard::inside_tls(stream, handshake.certificate_verified)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn message(kind: u8, body: &[u8]) -> Vec<u8> {
        let mut bytes = vec![kind];
        bytes.extend_from_slice(&(body.len() as u32 + 4).to_be_bytes());
        bytes.extend_from_slice(body);
        bytes
    }

    fn authentication(code: u32, rest: &[u8]) -> Vec<u8> {
        let mut body = code.to_be_bytes().to_vec();
        body.extend_from_slice(rest);
        message(b'R', &body)
    }

    /// Feeds the bytes in pieces of `piece` bytes, as a slow network would deliver them.
    fn inspect_in_pieces(guard: &mut ClearTextGuard<()>, bytes: &[u8], piece: usize) -> Result<(), ClearTextPasswordRefused> {
        bytes.chunks(piece).try_for_each(|chunk| guard.inspect(chunk))
    }

    #[test]
    fn a_clear_text_request_is_refused_however_the_bytes_arrive() {
        let mut server_says = b"N".to_vec();
        server_says.extend(message(b'E', b"SFATAL\0Mnot this time\0\0"));
        server_says.extend(authentication(CLEAR_TEXT_PASSWORD_REQUEST, b""));
        for piece in 1..=server_says.len() {
            let mut guard = ClearTextGuard::on_socket((), SslMode::Prefer, SslNegotiation::Postgres);
            assert!(inspect_in_pieces(&mut guard, &server_says, piece).is_err(), "piece {piece}");
            assert!(guard.inspect(b"anything").is_err(), "stays refused");
        }
    }

    #[test]
    fn scram_and_everything_after_authentication_pass() {
        let mut server_says = authentication(10, b"SCRAM-SHA-256\0\0");
        server_says.extend(authentication(11, b"r=nonce,s=salt,i=4096"));
        server_says.extend(authentication(12, b"v=signature"));
        server_says.extend(authentication(AUTHENTICATION_OK, b""));
        // After AuthenticationOk nothing is read: bytes that look like a request pass.
        server_says.extend(authentication(CLEAR_TEXT_PASSWORD_REQUEST, b""));
        for piece in 1..=server_says.len() {
            let mut guard = ClearTextGuard::on_socket((), SslMode::Disable, SslNegotiation::Postgres);
            assert!(inspect_in_pieces(&mut guard, &server_says, piece).is_ok(), "piece {piece}");
            assert_eq!(guard.inspection, Inspection::Finished);
        }
    }

    #[test]
    fn tls_takes_over_after_the_servers_yes() {
        let mut socket = ClearTextGuard::on_socket((), SslMode::Require, SslNegotiation::Postgres);
        let mut server_says = b"S".to_vec();
        server_says.extend(authentication(CLEAR_TEXT_PASSWORD_REQUEST, b""));
        assert!(socket.inspect(&server_says).is_ok(), "encrypted bytes are TLS's guard's business");
        let request = authentication(CLEAR_TEXT_PASSWORD_REQUEST, b"");
        assert!(ClearTextGuard::inside_tls((), false).inspect(&request).is_err());
        assert!(ClearTextGuard::inside_tls((), true).inspect(&request).is_ok());
    }
}
