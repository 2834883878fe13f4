//! Response bodies: most are small and made in memory; a recording is read from its file as
//! it is sent, so a long one costs a buffer, not its size in memory.

use bytes::Bytes;
use http_body_util::Full;
use hyper::body::{Body, Frame, SizeHint};
use std::pin::Pin;
use std::task::{Context, Poll};
use tokio::io::{AsyncRead, ReadBuf};

/// Bytes read from a file per body frame.
const CHUNK: usize = 64 * 1024;

/// A response body: a small one made in memory, or a file (part of one) read as it is sent.
pub enum SiteBody {
    Full(Full<Bytes>),
    File(FileBody),
}

impl From<Full<Bytes>> for SiteBody {
    fn from(body: Full<Bytes>) -> Self {
        Self::Full(body)
    }
}

impl Body for SiteBody {
    type Data = Bytes;
    type Error = std::io::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, std::io::Error>>> {
        match self.get_mut() {
            Self::Full(full) => Pin::new(full)
                .poll_frame(cx)
                .map(|frame| frame.map(|result| result.map_err(|never| match never {}))),
            Self::File(file) => Pin::new(file).poll_frame(cx),
        }
    }

    fn is_end_stream(&self) -> bool {
        match self {
            Self::Full(full) => full.is_end_stream(),
            Self::File(file) => file.remaining == 0,
        }
    }

    fn size_hint(&self) -> SizeHint {
        match self {
            Self::Full(full) => full.size_hint(),
            Self::File(file) => SizeHint::with_exact(file.remaining),
        }
    }
}

/// `remaining` bytes of an open file, from where it stands.
pub struct FileBody {
    file: tokio::fs::File,
    remaining: u64,
}

impl FileBody {
    /// The next `remaining` bytes of `file`, from where it stands.
    pub fn new(file: tokio::fs::File, remaining: u64) -> Self {
        Self { file, remaining }
    }
}

impl Body for FileBody {
    type Data = Bytes;
    type Error = std::io::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, std::io::Error>>> {
        let this = self.get_mut();
        if this.remaining == 0 {
            return Poll::Ready(None);
        }
        let want = usize::try_from(this.remaining).unwrap_or(CHUNK).min(CHUNK);
        let mut buffer = vec![0u8; want];
        let mut read = ReadBuf::new(&mut buffer);
        match Pin::new(&mut this.file).poll_read(cx, &mut read) {
            Poll::Pending => Poll::Pending,
            Poll::Ready(Err(e)) => Poll::Ready(Some(Err(e))),
            Poll::Ready(Ok(())) => {
                let filled = read.filled().len();
                if filled == 0 {
                    // The file shrank (rotation deleted it while it was sent).
                    this.remaining = 0;
                    return Poll::Ready(Some(Err(std::io::Error::new(
                        std::io::ErrorKind::UnexpectedEof,
                        "the recording ended early",
                    ))));
                }
                this.remaining -= filled as u64;
                buffer.truncate(filled);
                Poll::Ready(Some(Ok(Frame::data(Bytes::from(buffer)))))
            }
        }
    }
}
