//! Reading HTTP/1.1 responses one after the other from a connection: heads
//! with httparse, bodies by `Content-Length`, chunked, or up to the end of
//! the connection; what the server says about keeping the connection.
//!
//! Used by the pipelined connections of [`HttpStore`](super::HttpStore),
//! where many responses arrive back to back on one connection, so the
//! reader keeps what it read past one response for the next.

use std::fmt;
use std::io::{self, Read};
use std::time::{Duration, SystemTime};

/// Longest response head accepted (status line and headers).
const MAX_HEAD: usize = 64 * 1024;
/// Most headers accepted in a response.
const MAX_HEADERS: usize = 64;
/// Bytes asked of the connection per read.
const READ_SIZE: usize = 64 * 1024;

/// One response.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Response {
    /// The status code.
    pub(crate) status: u16,
    /// The body, de-chunked.
    pub(crate) body: Vec<u8>,
    /// How long the server asked to wait (`Retry-After`), if it did.
    pub(crate) retry_after: Option<Duration>,
    /// The response is HTTP/1.0.
    pub(crate) http10: bool,
    /// The server closes the connection after this response
    /// (`Connection: close`, HTTP/1.0 without keep-alive, or a body that
    /// ends with the connection): it processed nothing sent after the
    /// request this answers (RFC 9112 §9.6).
    pub(crate) close: bool,
}

/// Why no response could be read.
#[derive(Debug)]
pub(crate) enum ReadError {
    /// The connection failed, or ended in the middle of a response.
    Io(io::Error),
    /// What came is not an HTTP/1.x response, or is larger than allowed.
    Malformed(String),
}

impl fmt::Display for ReadError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ReadError::Io(e) => write!(f, "{e}"),
            ReadError::Malformed(m) => write!(f, "malformed answer: {m}"),
        }
    }
}

impl From<io::Error> for ReadError {
    fn from(e: io::Error) -> Self {
        ReadError::Io(e)
    }
}

/// How a body is delimited.
enum Framing {
    Length(usize),
    Chunked,
    UntilClose,
}

/// What the head of a response says.
struct Head {
    len: usize,
    status: u16,
    retry_after: Option<Duration>,
    http10: bool,
    close: bool,
    framing: Framing,
}

/// Reads responses from `R` in order, keeping bytes read past a response
/// for the next one.
pub(crate) struct ResponseReader<R> {
    source: R,
    /// Bytes read and not yet taken (from `start`).
    buf: Vec<u8>,
    /// What each read fills (zeroed once, not per read).
    scratch: Box<[u8]>,
    /// Start of unparsed bytes in `buf`.
    start: usize,
    max_body: usize,
}

impl<R: Read> ResponseReader<R> {
    /// A reader of responses whose bodies are at most `max_body` bytes.
    pub(crate) fn new(source: R, max_body: usize) -> Self {
        ResponseReader {
            source,
            buf: Vec::with_capacity(READ_SIZE),
            scratch: vec![0; READ_SIZE].into_boxed_slice(),
            start: 0,
            max_body,
        }
    }

    /// The next response; `Ok(None)` when the connection ended cleanly
    /// between responses. Interim (1xx) responses are skipped.
    pub(crate) fn read_response(&mut self) -> Result<Option<Response>, ReadError> {
        loop {
            let head = loop {
                if let Some(head) = self.parse_head()? {
                    break head;
                }
                if self.unparsed() > MAX_HEAD {
                    return Err(ReadError::Malformed(format!(
                        "response head longer than {MAX_HEAD} bytes"
                    )));
                }
                if self.fill()? == 0 {
                    if self.unparsed() == 0 {
                        return Ok(None);
                    }
                    return Err(eof("in a response head"));
                }
            };
            if (100..200).contains(&head.status) && head.status != 101 {
                self.start += head.len;
                continue;
            }
            self.start += head.len;
            let body = match head.framing {
                Framing::Length(n) => self.length_body(n)?,
                Framing::Chunked => self.chunked_body()?,
                Framing::UntilClose => self.body_until_close()?,
            };
            return Ok(Some(Response {
                status: head.status,
                retry_after: head.retry_after,
                body,
                http10: head.http10,
                close: head.close || matches!(head.framing, Framing::UntilClose),
            }));
        }
    }

    fn unparsed(&self) -> usize {
        self.buf.len() - self.start
    }

    /// Reads more bytes into `buf` (moving unparsed bytes to its front
    /// first); 0 at the end of the connection.
    fn fill(&mut self) -> io::Result<usize> {
        if self.start > 0 {
            self.buf.copy_within(self.start.., 0);
            self.buf.truncate(self.buf.len() - self.start);
            self.start = 0;
        }
        let n = loop {
            match self.source.read(&mut self.scratch) {
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                other => break other?,
            }
        };
        self.buf.extend_from_slice(&self.scratch[..n]);
        Ok(n)
    }

    /// Makes sure `n` unparsed bytes are buffered.
    fn want(&mut self, n: usize, what: &str) -> Result<(), ReadError> {
        while self.unparsed() < n {
            if self.fill()? == 0 {
                return Err(eof(what));
            }
        }
        Ok(())
    }

    fn parse_head(&mut self) -> Result<Option<Head>, ReadError> {
        let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
        let mut response = httparse::Response::new(&mut headers);
        let len = match response.parse(&self.buf[self.start..]) {
            Ok(httparse::Status::Complete(len)) => len,
            Ok(httparse::Status::Partial) => return Ok(None),
            Err(e) => return Err(ReadError::Malformed(e.to_string())),
        };
        let status = response.code.unwrap_or_default();
        let http10 = response.version == Some(0);
        let mut close = http10;
        let mut length: Option<usize> = None;
        let mut chunked = false;
        let retry_after = super::retry_after::from_headers(
            response.headers.iter().map(|h| (h.name, h.value)),
            SystemTime::now(),
        );
        for header in response.headers.iter() {
            let value = String::from_utf8_lossy(header.value);
            if header.name.eq_ignore_ascii_case("connection") {
                for token in value.split(',').map(str::trim) {
                    if token.eq_ignore_ascii_case("close") {
                        close = true;
                    } else if token.eq_ignore_ascii_case("keep-alive") && http10 {
                        close = false;
                    }
                }
            } else if header.name.eq_ignore_ascii_case("content-length") {
                let n = value.trim().parse::<usize>().map_err(|_| {
                    ReadError::Malformed(format!("bad Content-Length {:?}", value.trim()))
                })?;
                if length.is_some_and(|m| m != n) {
                    return Err(ReadError::Malformed("conflicting Content-Length".into()));
                }
                length = Some(n);
            } else if header.name.eq_ignore_ascii_case("transfer-encoding") {
                chunked = value
                    .rsplit(',')
                    .next()
                    .is_some_and(|last| last.trim().eq_ignore_ascii_case("chunked"));
                if !chunked {
                    return Err(ReadError::Malformed(format!(
                        "unsupported Transfer-Encoding {:?}",
                        value.trim()
                    )));
                }
            }
        }
        let framing = if status == 204 || status == 304 || (100..200).contains(&status) {
            Framing::Length(0)
        } else if chunked {
            Framing::Chunked
        } else if let Some(n) = length {
            Framing::Length(n)
        } else {
            Framing::UntilClose
        };
        Ok(Some(Head {
            len,
            status,
            retry_after,
            http10,
            close,
            framing,
        }))
    }

    fn check_size(&self, n: usize) -> Result<(), ReadError> {
        if n > self.max_body {
            return Err(ReadError::Malformed(format!(
                "body of more than {} bytes",
                self.max_body
            )));
        }
        Ok(())
    }

    fn length_body(&mut self, n: usize) -> Result<Vec<u8>, ReadError> {
        self.check_size(n)?;
        self.want(n, "in a response body")?;
        let body = self.buf[self.start..self.start + n].to_vec();
        self.start += n;
        Ok(body)
    }

    fn chunked_body(&mut self) -> Result<Vec<u8>, ReadError> {
        let mut body = Vec::new();
        loop {
            let (line, size) = loop {
                match httparse::parse_chunk_size(&self.buf[self.start..]) {
                    Ok(httparse::Status::Complete((line, size))) => break (line, size),
                    Ok(httparse::Status::Partial) if self.unparsed() > MAX_HEAD => {
                        return Err(ReadError::Malformed("chunk size line too long".into()));
                    }
                    Ok(httparse::Status::Partial) => {
                        if self.fill()? == 0 {
                            return Err(eof("in a chunked body"));
                        }
                    }
                    Err(_) => return Err(ReadError::Malformed("bad chunk size".into())),
                }
            };
            self.start += line;
            if size == 0 {
                self.skip_trailers()?;
                return Ok(body);
            }
            let size = usize::try_from(size).unwrap_or(usize::MAX);
            self.check_size(body.len().saturating_add(size))?;
            self.want(size + 2, "in a chunked body")?;
            let data = &self.buf[self.start..self.start + size + 2];
            if &data[size..] != b"\r\n" {
                return Err(ReadError::Malformed("chunk not followed by CRLF".into()));
            }
            body.extend_from_slice(&data[..size]);
            self.start += size + 2;
        }
    }

    /// Skips the trailer section after the last chunk, up to its empty line.
    fn skip_trailers(&mut self) -> Result<(), ReadError> {
        loop {
            let line_end = loop {
                if let Some(i) = self.buf[self.start..].windows(2).position(|w| w == b"\r\n") {
                    break i;
                }
                if self.unparsed() > MAX_HEAD {
                    return Err(ReadError::Malformed("trailers too long".into()));
                }
                if self.fill()? == 0 {
                    return Err(eof("in the trailers of a chunked body"));
                }
            };
            self.start += line_end + 2;
            if line_end == 0 {
                return Ok(());
            }
        }
    }

    fn body_until_close(&mut self) -> Result<Vec<u8>, ReadError> {
        loop {
            self.check_size(self.unparsed())?;
            if self.fill()? == 0 {
                let body = self.buf[self.start..].to_vec();
                self.start = self.buf.len();
                return Ok(body);
            }
        }
    }
}

fn eof(what: &str) -> ReadError {
    ReadError::Io(io::Error::new(
        io::ErrorKind::UnexpectedEof,
        format!("the connection ended {what}"),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A source that hands out its bytes `step` at a time.
    struct Trickle {
        data: Vec<u8>,
        at: usize,
        step: usize,
    }

    impl Read for Trickle {
        fn read(&mut self, out: &mut [u8]) -> io::Result<usize> {
            let n = self.step.min(out.len()).min(self.data.len() - self.at);
            out[..n].copy_from_slice(&self.data[self.at..self.at + n]);
            self.at += n;
            Ok(n)
        }
    }

    fn reader(data: &[u8], step: usize) -> ResponseReader<Trickle> {
        let source = Trickle {
            data: data.to_vec(),
            at: 0,
            step,
        };
        ResponseReader::new(source, 1024)
    }

    fn all(data: &[u8], step: usize) -> Result<Vec<Response>, ReadError> {
        let mut r = reader(data, step);
        let mut out = Vec::new();
        while let Some(response) = r.read_response()? {
            out.push(response);
        }
        Ok(out)
    }

    const PIPELINED: &[u8] = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\n{}\
HTTP/1.1 100 Continue\r\n\r\n\
HTTP/1.1 409 Conflict\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n2;ext=1\r\nde\r\n0\r\nX-Trailer: 1\r\n\r\n\
HTTP/1.1 204 No Content\r\n\r\n\
HTTP/1.1 200 OK\r\nConnection: keep-alive, close\r\nContent-Length: 1\r\n\r\nz";

    #[test]
    fn reads_back_to_back_responses_however_they_arrive() {
        for step in [1, 2, 7, 4096] {
            let got = all(PIPELINED, step).unwrap();
            let summary: Vec<_> = got
                .iter()
                .map(|r| {
                    (
                        r.status,
                        String::from_utf8_lossy(&r.body).into_owned(),
                        r.close,
                    )
                })
                .collect();
            assert_eq!(
                summary,
                [
                    (200, "{}".to_string(), false),
                    (409, "abcde".to_string(), false),
                    (204, String::new(), false),
                    (200, "z".to_string(), true),
                ],
                "read {step} bytes at a time"
            );
        }
    }

    #[test]
    fn http10_closes_unless_kept_alive() {
        let got = all(
            b"HTTP/1.0 200 OK\r\nConnection: Keep-Alive\r\nContent-Length: 0\r\n\r\n\
HTTP/1.0 200 OK\r\nContent-Length: 0\r\n\r\n",
            3,
        )
        .unwrap();
        assert!(got[0].http10 && !got[0].close);
        assert!(got[1].http10 && got[1].close);
        let until_close = all(b"HTTP/1.1 200 OK\r\n\r\nto the end", 4).unwrap();
        assert_eq!(until_close[0].body, b"to the end");
        assert!(until_close[0].close);
    }

    #[test]
    fn refuses_what_is_not_a_response_or_too_large() {
        let malformed = |data: &[u8]| matches!(all(data, 5), Err(ReadError::Malformed(_)));
        assert!(malformed(b"SSH-2.0-OpenSSH_9.6\r\n\r\n"));
        assert!(malformed(
            b"HTTP/1.1 200 OK\r\nContent-Length: 2000\r\n\r\n"
        ));
        assert!(malformed(
            b"HTTP/1.1 200 OK\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\nab"
        ));
        assert!(malformed(
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip\r\n\r\n"
        ));
        let mut huge = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n".to_vec();
        for _ in 0..20 {
            huge.extend_from_slice(b"64\r\n");
            huge.extend_from_slice(&[b'x'; 100]);
            huge.extend_from_slice(b"\r\n");
        }
        assert!(malformed(&huge), "chunks add up past the limit");
        let long_head = [b"HTTP/1.1 200 OK\r\nX: ".as_slice(), &[b'a'; MAX_HEAD + 10]].concat();
        assert!(matches!(
            all(&long_head, 4096),
            Err(ReadError::Malformed(_))
        ));
    }

    #[test]
    fn an_end_mid_response_is_an_io_error_and_between_responses_is_none() {
        let mut r = reader(b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nab", 100);
        match r.read_response() {
            Err(ReadError::Io(e)) => assert_eq!(e.kind(), io::ErrorKind::UnexpectedEof),
            other => panic!("{other:?}"),
        }
        let mut r = reader(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n", 100);
        assert!(r.read_response().unwrap().is_some());
        assert!(r.read_response().unwrap().is_none());
        assert!(matches!(
            reader(b"HTTP/1.1 200", 100).read_response(),
            Err(ReadError::Io(_))
        ));
    }
}
