//! Newline-delimited JSON framing (Ollama's streamed replies): splits a byte stream into lines
//! however the chunks fall, each line bounded (`MAX_LINE_BYTES`, as for SSE), a last line
//! without its newline still delivered. The stall limit comes from `guard::Guarded` beneath.

use super::guard::MAX_LINE_BYTES;
use bytes::{Buf, Bytes, BytesMut};
use futures_util::{Stream, StreamExt};

/// What went wrong reading lines: the stream's own error, or a line over the bound.
#[derive(Debug)]
pub(crate) enum LineError<E> {
    Inner(E),
    TooLong,
}

pub(crate) struct Lines<S> {
    inner: S,
    buf: BytesMut,
    /// Bytes of `buf` already searched for a newline.
    searched: usize,
    ended: bool,
}

impl<S, E> Lines<S>
where
    S: Stream<Item = Result<Bytes, E>> + Unpin,
{
    pub(crate) fn new(inner: S) -> Self {
        Lines { inner, buf: BytesMut::new(), searched: 0, ended: false }
    }

    /// The next line without its `\n` (and `\r`); `None` at the end of the stream.
    pub(crate) async fn next_line(&mut self) -> Option<Result<Bytes, LineError<E>>> {
        loop {
            if let Some(pos) = self.buf[self.searched..].iter().position(|b| *b == b'\n') {
                let mut line = self.buf.split_to(self.searched + pos + 1);
                self.searched = 0;
                line.truncate(line.len() - 1);
                if line.last() == Some(&b'\r') {
                    line.truncate(line.len() - 1);
                }
                return Some(Ok(line.freeze()));
            }
            self.searched = self.buf.len();
            if self.buf.len() > MAX_LINE_BYTES {
                self.ended = true;
                self.buf.clear();
                self.searched = 0;
                return Some(Err(LineError::TooLong));
            }
            if self.ended {
                if self.buf.is_empty() {
                    return None;
                }
                self.searched = 0;
                let rest = self.buf.split().freeze();
                return Some(Ok(rest));
            }
            match self.inner.next().await {
                Some(Ok(mut bytes)) => {
                    // Never hold more than one line's bound plus what just arrived.
                    while bytes.has_remaining() {
                        let take = bytes.len().min(MAX_LINE_BYTES + 1);
                        self.buf.extend_from_slice(&bytes.split_to(take));
                        if !self.buf[self.searched..].contains(&b'\n') && self.buf.len() > MAX_LINE_BYTES {
                            break;
                        }
                    }
                }
                Some(Err(e)) => {
                    self.ended = true;
                    self.buf.clear();
                    self.searched = 0;
                    return Some(Err(LineError::Inner(e)));
                }
                None => self.ended = true,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lines(chunks: Vec<&'static [u8]>) -> Vec<Result<String, String>> {
        let rt = tokio::runtime::Builder::new_current_thread().build().unwrap();
        rt.block_on(async {
            let s = futures_util::stream::iter(chunks.into_iter().map(|c| Ok::<_, String>(Bytes::from_static(c))));
            let mut l = Lines::new(s);
            let mut out = Vec::new();
            while let Some(item) = l.next_line().await {
                out.push(match item {
                    Ok(b) => Ok(String::from_utf8(b.to_vec()).unwrap()),
                    Err(LineError::Inner(e)) => Err(e),
                    Err(LineError::TooLong) => Err("too long".into()),
                });
            }
            out
        })
    }

    #[test]
    fn a_line_split_across_chunks_is_joined() {
        let got = lines(vec![b"{\"a\":", b"1}\n{\"b\"", b":2}\r\n", b"\n{\"c\":3}"]);
        let want: Vec<Result<String, String>> =
            vec![Ok("{\"a\":1}".into()), Ok("{\"b\":2}".into()), Ok(String::new()), Ok("{\"c\":3}".into())];
        assert_eq!(got, want, "CRLF trimmed, an empty line kept, the last line without newline delivered");
    }

    #[test]
    fn several_lines_in_one_chunk() {
        assert_eq!(lines(vec![b"1\n2\n3\n"]), vec![Ok("1".into()), Ok("2".into()), Ok("3".into())]);
        assert!(lines(vec![]).is_empty());
    }

    #[test]
    fn an_oversized_line_is_refused_once() {
        let big: &'static [u8] = Box::leak(vec![b'x'; MAX_LINE_BYTES / 2].into_boxed_slice());
        let got = lines(vec![b"{\"ok\":1}\n", big, big, big, b"\n{}\n"]);
        assert_eq!(got.len(), 2, "{:?}", got.iter().map(|r| r.as_ref().map(String::len)).collect::<Vec<_>>());
        assert_eq!(got[0], Ok("{\"ok\":1}".into()));
        assert_eq!(got[1], Err("too long".into()));
    }

    #[test]
    fn one_huge_chunk_is_refused_too() {
        let huge: &'static [u8] = Box::leak(vec![b'y'; MAX_LINE_BYTES * 3].into_boxed_slice());
        assert_eq!(lines(vec![huge]), vec![Err("too long".into())]);
    }

    #[test]
    fn stream_errors_end_the_lines() {
        let rt = tokio::runtime::Builder::new_current_thread().build().unwrap();
        let got = rt.block_on(async {
            let s = futures_util::stream::iter(vec![Ok(Bytes::from_static(b"1\n2")), Err("reset"), Ok(Bytes::new())]);
            let mut l = Lines::new(s);
            let mut out = Vec::new();
            while let Some(item) = l.next_line().await {
                out.push(item.map(|b| b.to_vec()).map_err(|e| matches!(e, LineError::Inner("reset"))));
            }
            out
        });
        assert_eq!(got, vec![Ok(b"1".to_vec()), Err(true)]);
    }
}
