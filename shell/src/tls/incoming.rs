//! Accepted TCP connections through the TLS handshake, as the stream of
//! connections tonic serves. Each handshake runs in its own task, bounded
//! in time, so a slow or hostile client holds up nobody.

use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio_rustls::server::TlsStream;

use e2d_coalesced_io::CoalescedIo;

/// A handshake must finish within this.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// Finished handshakes waiting for the server to take them.
const READY_CONNECTIONS_MAX: usize = 64;

/// One connection after its handshake.
pub struct TlsConnection(TlsStream<TcpStream>);

impl TlsConnection {
    /// The common name of the client certificate the handshake verified
    /// (the user of etcd's `--client-cert-auth`).
    pub fn client_common_name(&self) -> Option<Arc<str>> {
        use x509_parser::prelude::{FromDer, X509Certificate};
        let leaf = self.0.get_ref().1.peer_certificates()?.first()?;
        let (_, certificate) = X509Certificate::from_der(leaf.as_ref()).ok()?;
        let name = certificate.subject().iter_common_name().next()?;
        name.as_str().ok().map(Arc::from)
    }
}

impl tonic::transport::server::Connected for TlsConnection {
    type ConnectInfo = ();

    fn connect_info(&self) -> Self::ConnectInfo {}
}

impl AsyncRead for TlsConnection {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.0).poll_read(cx, buf)
    }
}

impl AsyncWrite for TlsConnection {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.0).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.0).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.0).poll_shutdown(cx)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.0).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.0.is_write_vectored()
    }
}

/// The connections of `listener` that complete a handshake under `config`,
/// their writes coalesced (see [`e2d_coalesced_io`]).
pub fn accept(
    listener: TcpListener,
    config: Arc<rustls::ServerConfig>,
    what: &'static str,
) -> tokio_stream::wrappers::ReceiverStream<std::io::Result<CoalescedIo<TlsConnection>>> {
    let (ready, connections) = mpsc::channel(READY_CONNECTIONS_MAX);
    let acceptor = tokio_rustls::TlsAcceptor::from(config);
    tokio::spawn(async move {
        loop {
            let (tcp, from) = match listener.accept().await {
                Ok(accepted) => accepted,
                Err(e) => {
                    tracing::warn!(error = %e, "{what}: accept failed");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            };
            let _ = tcp.set_nodelay(true);
            if ready.is_closed() {
                return;
            }
            let (acceptor, ready) = (acceptor.clone(), ready.clone());
            tokio::spawn(async move {
                match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(tcp)).await {
                    Ok(Ok(stream)) => {
                        let connection = CoalescedIo::new(TlsConnection(stream));
                        let _ = ready.send(Ok(connection)).await;
                    }
                    Ok(Err(e)) => {
                        tracing::info!(%from, error = %e, "{what}: TLS handshake refused")
                    }
                    Err(_) => tracing::info!(%from, "{what}: TLS handshake timed out"),
                }
            });
        }
    });
    tokio_stream::wrappers::ReceiverStream::new(connections)
}
