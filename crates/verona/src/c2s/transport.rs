//! The socket under a client stream: plain TCP, then TLS after STARTTLS or on a direct TLS
//! listener.

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tokio_rustls::server::TlsStream;
use verona_auth::TlsBinding;

/// Bytes read from the socket at a time.
const READ_CHUNK: usize = 4096;

/// Plain TCP, or TLS after STARTTLS or on a direct TLS listener.
pub(super) enum Transport {
    Plain(TcpStream),
    Tls(Box<TlsStream<TcpStream>>),
    /// Only while the socket is handed to the TLS acceptor.
    Upgrading,
}

fn upgrading() -> io::Error {
    io::Error::new(io::ErrorKind::NotConnected, "TLS upgrade in progress")
}

impl AsyncRead for Transport {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Transport::Plain(s) => Pin::new(s).poll_read(cx, buf),
            Transport::Tls(s) => Pin::new(s.as_mut()).poll_read(cx, buf),
            Transport::Upgrading => Poll::Ready(Err(upgrading())),
        }
    }
}

impl AsyncWrite for Transport {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            Transport::Plain(s) => Pin::new(s).poll_write(cx, buf),
            Transport::Tls(s) => Pin::new(s.as_mut()).poll_write(cx, buf),
            Transport::Upgrading => Poll::Ready(Err(upgrading())),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Transport::Plain(s) => Pin::new(s).poll_flush(cx),
            Transport::Tls(s) => Pin::new(s.as_mut()).poll_flush(cx),
            Transport::Upgrading => Poll::Ready(Err(upgrading())),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Transport::Plain(s) => Pin::new(s).poll_shutdown(cx),
            Transport::Tls(s) => Pin::new(s.as_mut()).poll_shutdown(cx),
            Transport::Upgrading => Poll::Ready(Ok(())),
        }
    }
}

impl Transport {
    /// The next bytes from the peer; empty at end of stream. The read buffer lives on the
    /// stack for one poll only, so an idle connection holds none of its own (TLS keeps what it
    /// has received in rustls's buffers).
    pub(super) async fn read_some(&mut self) -> io::Result<Vec<u8>> {
        match self {
            Transport::Plain(tcp) => loop {
                tcp.readable().await?;
                let mut chunk = [0u8; READ_CHUNK];
                match tcp.try_read(&mut chunk) {
                    Ok(n) => return Ok(chunk[..n].to_vec()),
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => continue,
                    Err(e) => return Err(e),
                }
            },
            Transport::Tls(tls) => {
                std::future::poll_fn(|cx| {
                    let mut chunk = [0u8; READ_CHUNK];
                    let mut buf = ReadBuf::new(&mut chunk);
                    // Pending leaves `buf` untouched: nothing is lost when the poll is dropped.
                    Pin::new(tls.as_mut())
                        .poll_read(cx, &mut buf)
                        .map_ok(|()| buf.filled().to_vec())
                })
                .await
            }
            Transport::Upgrading => Err(upgrading()),
        }
    }
}

/// RFC 9266 channel binding data; only on TLS 1.3, where the exporter is safe without EMS.
pub(super) fn tls_exporter(tls: &TlsStream<TcpStream>) -> Option<TlsBinding> {
    let connection = tls.get_ref().1;
    if connection.protocol_version() != Some(rustls::ProtocolVersion::TLSv1_3) {
        return None;
    }
    let data = connection
        .export_keying_material(vec![0u8; 32], b"EXPORTER-Channel-Binding", None)
        .ok()?;
    Some(TlsBinding {
        kind: "tls-exporter",
        data,
    })
}
