//! Reading a message body as its framing says, from any byte stream: request bodies from
//! clients, response bodies from backends. Yields the body's data (chunked framing removed).

use std::future::poll_fn;
use std::io;
use std::pin::Pin;
use std::task::{ready, Context, Poll};

use bytes::{Bytes, BytesMut};
use tokio::io::AsyncRead;

use super::codec::{ChunkedDecoder, Framing, ParseError};

/// How much is read from the socket at a time while relaying a body.
const READ_SIZE: usize = 16 * 1024;

#[derive(Debug, thiserror::Error)]
pub(crate) enum BodyError {
    #[error("connection closed in the middle of the body")]
    Truncated,
    #[error(transparent)]
    Framing(#[from] ParseError),
    #[error(transparent)]
    Io(#[from] io::Error),
}

impl BodyError {
    /// The sender went quiet for `idle` in the middle of a body.
    pub(crate) fn quiet(idle: std::time::Duration) -> Self {
        BodyError::Io(io::Error::new(
            io::ErrorKind::TimedOut,
            format!("no body bytes for {idle:?}"),
        ))
    }
}

/// The state of one body being read.
#[derive(Debug)]
pub(crate) struct BodyReader {
    framing: Framing,
    remaining: u64,
    chunked: ChunkedDecoder,
    done: bool,
}

impl BodyReader {
    pub(crate) fn new(framing: Framing) -> Self {
        BodyReader {
            framing,
            remaining: match framing {
                Framing::Length(n) => n,
                _ => 0,
            },
            chunked: ChunkedDecoder::default(),
            done: framing == Framing::Empty,
        }
    }

    /// The whole body has been read; `buf` now holds only what follows it.
    pub(crate) fn is_done(&self) -> bool {
        self.done
    }

    /// A chunked body's trailer fields that may be passed on, once it is done (each line with
    /// its CRLF); empty for none.
    pub(crate) fn take_trailers(&mut self) -> Vec<u8> {
        self.chunked.take_trailers()
    }

    /// Bytes of the body still to come, when its length is known.
    pub(crate) fn remaining(&self) -> Option<u64> {
        match self.framing {
            Framing::Empty => Some(0),
            Framing::Length(_) => Some(self.remaining),
            Framing::Chunked | Framing::Close => None,
        }
    }

    /// The next piece of the body: from `buf` if it holds some, else read from `io` into `buf`.
    /// `None` at the end of the body.
    pub(crate) fn poll_next<R: AsyncRead + Unpin>(
        &mut self,
        cx: &mut Context<'_>,
        io: &mut R,
        buf: &mut BytesMut,
    ) -> Poll<Result<Option<Bytes>, BodyError>> {
        loop {
            if self.done {
                return Poll::Ready(Ok(None));
            }
            match self.framing {
                Framing::Empty => {
                    self.done = true;
                    return Poll::Ready(Ok(None));
                }
                Framing::Length(_) if self.remaining == 0 => {
                    self.done = true;
                    return Poll::Ready(Ok(None));
                }
                Framing::Length(_) if !buf.is_empty() => {
                    let n = (buf.len() as u64).min(self.remaining) as usize;
                    self.remaining -= n as u64;
                    self.done = self.remaining == 0;
                    return Poll::Ready(Ok(Some(buf.split_to(n).freeze())));
                }
                Framing::Chunked => {
                    if let Some(data) = self.chunked.decode(buf)? {
                        return Poll::Ready(Ok(Some(data)));
                    }
                    if self.chunked.is_done() {
                        self.done = true;
                        return Poll::Ready(Ok(None));
                    }
                }
                Framing::Close if !buf.is_empty() => {
                    return Poll::Ready(Ok(Some(buf.split().freeze())));
                }
                _ => {}
            }
            buf.reserve(READ_SIZE);
            let n = ready!(tokio_util::io::poll_read_buf(Pin::new(&mut *io), cx, buf))?;
            if n == 0 {
                if self.framing == Framing::Close {
                    self.done = true;
                    return Poll::Ready(Ok(None));
                }
                return Poll::Ready(Err(BodyError::Truncated));
            }
        }
    }

    pub(crate) async fn next<R: AsyncRead + Unpin>(
        &mut self,
        io: &mut R,
        buf: &mut BytesMut,
    ) -> Result<Option<Bytes>, BodyError> {
        poll_fn(|cx| self.poll_next(cx, io, buf)).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn read_all(framing: Framing, wire: &[u8]) -> (Result<Vec<u8>, String>, Vec<u8>) {
        let mut io = wire;
        let mut buf = BytesMut::new();
        let mut body = BodyReader::new(framing);
        let mut out = Vec::new();
        loop {
            match body.next(&mut io, &mut buf).await {
                Ok(Some(d)) => out.extend_from_slice(&d),
                Ok(None) => break,
                Err(e) => return (Err(e.to_string()), buf.to_vec()),
            }
        }
        let mut rest = buf.to_vec();
        rest.extend_from_slice(io);
        (Ok(out), rest)
    }

    #[tokio::test]
    async fn lengths_chunks_and_close() {
        assert_eq!(
            read_all(Framing::Length(5), b"helloGET").await,
            (Ok(b"hello".to_vec()), b"GET".to_vec())
        );
        assert_eq!(
            read_all(Framing::Chunked, b"3\r\nabc\r\n0\r\n\r\nNEXT").await,
            (Ok(b"abc".to_vec()), b"NEXT".to_vec())
        );
        assert_eq!(
            read_all(Framing::Close, b"all of it").await.0,
            Ok(b"all of it".to_vec())
        );
        assert_eq!(
            read_all(Framing::Empty, b"GET").await,
            (Ok(vec![]), b"GET".to_vec())
        );
        assert_eq!(
            read_all(Framing::Length(9), b"short").await.0,
            Err("connection closed in the middle of the body".into())
        );
        assert!(read_all(Framing::Chunked, b"3\r\nab").await.0.is_err());
    }
}
