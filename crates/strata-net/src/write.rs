//! Vectored writes: the pieces of one message (a head, a chunk line, data, its CRLF, the last
//! chunk) leave in as few syscalls as the socket allows, without being copied together first.

use std::io::IoSlice;

use tokio::io::{AsyncWrite, AsyncWriteExt};

/// The pieces of one write: at most a head, a chunk line, data, its CRLF and the last chunk.
#[derive(Default)]
pub struct Parts<'a> {
    items: [&'a [u8]; 5],
    len: usize,
}

impl<'a> Parts<'a> {
    /// Adds `part`, unless it is empty; five non-empty parts at most (a sixth panics).
    pub fn push(&mut self, part: &'a [u8]) {
        if !part.is_empty() {
            self.items[self.len] = part;
            self.len += 1;
        }
    }

    /// Whether no part was pushed (or every one was empty).
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }
}

/// Writes every part, in as few syscalls as the socket allows.
pub async fn write_all_parts<W: AsyncWrite + Unpin>(
    w: &mut W,
    parts: &Parts<'_>,
) -> std::io::Result<()> {
    let mut slices = [IoSlice::new(&[]); 5];
    for (slice, part) in slices.iter_mut().zip(&parts.items[..parts.len]) {
        *slice = IoSlice::new(part);
    }
    let mut rest = &mut slices[..parts.len];
    while !rest.is_empty() {
        let n = w.write_vectored(rest).await?;
        if n == 0 {
            return Err(std::io::ErrorKind::WriteZero.into());
        }
        IoSlice::advance_slices(&mut rest, n);
    }
    w.flush().await
}
