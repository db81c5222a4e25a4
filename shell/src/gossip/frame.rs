//! Push-pull frames over TCP: a 4-byte big-endian length, then the encoded
//! `PushPull`. Reads are bounded in size and time.

use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// How long one push-pull exchange (connect, send, receive) may take.
pub const EXCHANGE_TIMEOUT: Duration = Duration::from_secs(5);

#[derive(Debug, thiserror::Error)]
pub enum FrameError {
    #[error("push-pull frame of {size_bytes} bytes exceeds the limit of {max_bytes} bytes")]
    TooLarge { size_bytes: usize, max_bytes: usize },
    #[error("push-pull exchange timed out after {EXCHANGE_TIMEOUT:?}")]
    TimedOut,
    #[error("push-pull connection failed: {0}")]
    Io(#[from] std::io::Error),
}

pub async fn write_frame(stream: &mut TcpStream, bytes: &[u8]) -> Result<(), FrameError> {
    let len = u32::try_from(bytes.len()).map_err(|_| FrameError::TooLarge {
        size_bytes: bytes.len(),
        max_bytes: u32::MAX as usize,
    })?;
    stream.write_all(&len.to_be_bytes()).await?;
    stream.write_all(bytes).await?;
    stream.flush().await?;
    Ok(())
}

pub async fn read_frame(stream: &mut TcpStream, max_bytes: usize) -> Result<Vec<u8>, FrameError> {
    let mut len = [0u8; 4];
    stream.read_exact(&mut len).await?;
    let size_bytes = u32::from_be_bytes(len) as usize;
    if size_bytes > max_bytes {
        return Err(FrameError::TooLarge {
            size_bytes,
            max_bytes,
        });
    }
    let mut bytes = vec![0u8; size_bytes];
    stream.read_exact(&mut bytes).await?;
    Ok(bytes)
}

/// Sends `request` to `to` and returns the reply frame, within
/// [`EXCHANGE_TIMEOUT`].
pub async fn exchange(
    to: std::net::SocketAddr,
    request: &[u8],
    max_bytes: usize,
) -> Result<Vec<u8>, FrameError> {
    let work = async {
        let mut stream = TcpStream::connect(to).await?;
        write_frame(&mut stream, request).await?;
        read_frame(&mut stream, max_bytes).await
    };
    tokio::time::timeout(EXCHANGE_TIMEOUT, work)
        .await
        .map_err(|_| FrameError::TimedOut)?
}
