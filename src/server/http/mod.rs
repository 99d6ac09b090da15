//! A small HTTP/1.1 codec for the server: reading a request (head with
//! httparse, body by `Content-Length` or chunked) here; its target in
//! [`target`], and writing a response in [`response`].

mod response;
mod target;

use std::io::{self, BufRead, Read};

pub(crate) use response::{chunk, head, Response, JSON, LAST_CHUNK, TEXT};
use target::{decode_component, normalize_path};

/// Longest request head accepted (request line and headers).
const MAX_HEAD: usize = 64 * 1024;
/// Most headers accepted.
const MAX_HEADERS: usize = 100;

/// A parsed request.
#[derive(Debug)]
pub(crate) struct Request {
    pub(crate) method: String,
    /// The path, without the query.
    pub(crate) path: String,
    /// The raw query string (after `?`), possibly empty.
    pub(crate) query: String,
    /// Headers with lower-cased names.
    headers: Vec<(String, Vec<u8>)>,
    pub(crate) body: Vec<u8>,
    /// Whether the client wants the connection kept open.
    pub(crate) keep_alive: bool,
}

impl Request {
    /// The first value of header `name` (lower case).
    pub(crate) fn header(&self, name: &str) -> Option<&[u8]> {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_slice())
    }

    /// The first value of query parameter `key`, decoded (`+` is a space).
    pub(crate) fn query_param(&self, key: &str) -> Option<String> {
        self.query.split('&').find_map(|pair| {
            let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
            (decode_component(k) == key).then(|| decode_component(v))
        })
    }
}

/// Why a request could not be read.
#[derive(Debug)]
pub(crate) enum ReadError {
    /// The connection failed or ended mid-request: just close it.
    Io(io::Error),
    /// The request is malformed: answer 400 and close.
    Malformed(String),
    /// The head is too large: answer 431 and close.
    HeadTooLarge,
    /// The body exceeds the limit: answer 413 and close.
    BodyTooLarge,
}

impl From<io::Error> for ReadError {
    fn from(e: io::Error) -> Self {
        ReadError::Io(e)
    }
}

/// How a request's body is framed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Framing {
    /// No body.
    None,
    /// `Content-Length` bytes.
    Length(usize),
    /// `Transfer-Encoding: chunked`.
    Chunked,
}

/// A request whose head has been read; its body comes next.
#[derive(Debug)]
pub(crate) struct Head {
    request: Request,
    framing: Framing,
    /// HTTP/1.1 with `Expect: 100-continue` and a body.
    wants_continue: bool,
}

/// Reads the next request. `Ok(None)`: the client closed the connection
/// between requests. `continue_to` receives `100 Continue` when the client
/// asks for it.
#[cfg(test)]
pub(crate) fn read_request<R: BufRead, W: std::io::Write>(
    reader: &mut R,
    continue_to: &mut W,
    max_body: usize,
) -> Result<Option<Request>, ReadError> {
    match read_head(reader, max_body)? {
        Some(head) => {
            if head.wants_continue() {
                continue_to.write_all(CONTINUE)?;
            }
            read_body(reader, head, max_body).map(Some)
        }
        None => Ok(None),
    }
}

/// Reads the next request head (request line and headers, at most
/// [`MAX_HEAD`] bytes). `Ok(None)`: the client closed the connection
/// between requests.
pub(crate) fn read_head<R: BufRead>(
    reader: &mut R,
    max_body: usize,
) -> Result<Option<Head>, ReadError> {
    // Bytes of a head that arrived in pieces; empty while it has not.
    let mut partial: Vec<u8> = Vec::new();
    loop {
        let available = reader.fill_buf()?;
        if available.is_empty() {
            return if partial.is_empty() {
                Ok(None)
            } else {
                Err(ReadError::Io(io::ErrorKind::UnexpectedEof.into()))
            };
        }
        if partial.is_empty() {
            // The usual case: the whole head is in the buffer.
            if let Some((head, n)) = parse_head(available, max_body)? {
                reader.consume(n);
                return Ok(Some(head));
            }
            let taken = available.len();
            partial.extend_from_slice(available);
            reader.consume(taken);
            continue;
        }
        let before = partial.len();
        let taken = available.len();
        partial.extend_from_slice(available);
        // Parse again only once the end of a head may be there: a client
        // sending a byte at a time must not cost a parse per byte.
        let may_end = ends_head(&partial[before.saturating_sub(3)..]);
        if may_end || partial.len() >= MAX_HEAD {
            if let Some((head, n)) = parse_head(&partial, max_body)? {
                reader.consume(n - before);
                return Ok(Some(head));
            }
        }
        reader.consume(taken);
    }
}

/// Whether `bytes` hold the blank line that ends a head (httparse accepts
/// a bare `\n` as a line end).
fn ends_head(bytes: &[u8]) -> bool {
    bytes
        .windows(2)
        .enumerate()
        .any(|(i, w)| w == b"\n\n" || (w == b"\n\r" && bytes.get(i + 2) == Some(&b'\n')))
}

/// A complete request at the start of `buffered` and its length in bytes,
/// if one is there whole (head and a `Content-Length` body). `None` for an
/// incomplete request and for anything unusual (a chunked body, a head the
/// server refuses): those are left to [`read_head`], which waits for the
/// rest and answers errors.
pub(crate) fn parse_buffered(buffered: &[u8], max_body: usize) -> Option<(Request, usize)> {
    let (head, n) = parse_head(buffered, max_body).ok()??;
    let length = match head.framing {
        Framing::None => 0,
        Framing::Length(length) => length,
        Framing::Chunked => return None,
    };
    let body = buffered.get(n..n + length)?;
    let mut request = head.request;
    request.body = body.to_vec();
    Some((request, n + length))
}

/// Parses the head at the start of `bytes`: `Ok(None)` when it is not
/// complete yet, with its length when it is.
fn parse_head(bytes: &[u8], max_body: usize) -> Result<Option<(Head, usize)>, ReadError> {
    let mut slots = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut parsed = httparse::Request::new(&mut slots);
    let n = match parsed.parse(bytes) {
        Ok(httparse::Status::Complete(n)) => n,
        Ok(httparse::Status::Partial) if bytes.len() >= MAX_HEAD => {
            return Err(ReadError::HeadTooLarge)
        }
        Ok(httparse::Status::Partial) => return Ok(None),
        Err(httparse::Error::TooManyHeaders) => return Err(ReadError::HeadTooLarge),
        Err(e) => return Err(ReadError::Malformed(e.to_string())),
    };
    if n > MAX_HEAD {
        return Err(ReadError::HeadTooLarge);
    }
    let headers: Vec<(String, Vec<u8>)> = parsed
        .headers
        .iter()
        .map(|h| (h.name.to_ascii_lowercase(), h.value.to_vec()))
        .collect();
    let target = parsed.path.unwrap_or("/");
    let (path, query) = match target.split_once('?') {
        Some((p, q)) => (normalize_path(p), q.to_string()),
        None => (normalize_path(target), String::new()),
    };
    let version = parsed.version.unwrap_or(1);
    let mut request = Request {
        method: parsed.method.unwrap_or("GET").to_string(),
        path,
        query,
        headers,
        body: Vec::new(),
        keep_alive: false,
    };
    let connection = request
        .header("connection")
        .map(|v| String::from_utf8_lossy(v).to_ascii_lowercase())
        .unwrap_or_default();
    request.keep_alive = if version == 0 {
        connection.contains("keep-alive")
    } else {
        !connection.contains("close")
    };
    let framing = framing(&request, max_body)?;
    let wants_continue = framing != Framing::None
        && version == 1
        && request
            .header("expect")
            .is_some_and(|v| v.eq_ignore_ascii_case(b"100-continue"));
    Ok(Some((
        Head {
            request,
            framing,
            wants_continue,
        },
        n,
    )))
}

/// How the body is framed. `Transfer-Encoding: chunked` wins over a
/// `Content-Length` (RFC 9112 §6.3); more than one `Content-Length` is
/// refused, even with equal values, since two parsers could read the
/// message differently (request smuggling).
fn framing(request: &Request, max_body: usize) -> Result<Framing, ReadError> {
    let chunked = request.header("transfer-encoding").is_some_and(|v| {
        String::from_utf8_lossy(v)
            .to_ascii_lowercase()
            .contains("chunked")
    });
    let mut lengths = request
        .headers
        .iter()
        .filter(|(name, _)| name == "content-length")
        .map(|(_, value)| value);
    let length = lengths.next();
    if lengths.next().is_some() {
        return Err(ReadError::Malformed(
            "more than one Content-Length header".into(),
        ));
    }
    if chunked {
        return Ok(Framing::Chunked);
    }
    let Some(length) = length else {
        return Ok(Framing::None);
    };
    let length = std::str::from_utf8(length)
        .ok()
        .and_then(|s| s.trim().parse::<u64>().ok())
        .ok_or_else(|| ReadError::Malformed("invalid Content-Length".into()))?;
    if length > max_body as u64 {
        return Err(ReadError::BodyTooLarge);
    }
    Ok(match length {
        0 => Framing::None,
        n => Framing::Length(n as usize),
    })
}

/// The interim answer to `Expect: 100-continue`.
pub(crate) const CONTINUE: &[u8] = b"HTTP/1.1 100 Continue\r\n\r\n";

impl Head {
    /// Whether the client waits for [`CONTINUE`] before it sends the body
    /// (send it, then [`read_body`]).
    pub(crate) fn wants_continue(&self) -> bool {
        self.wants_continue
    }
}

/// Reads the body that `head` announces.
pub(crate) fn read_body<R: BufRead>(
    reader: &mut R,
    head: Head,
    max_body: usize,
) -> Result<Request, ReadError> {
    let mut request = head.request;
    match head.framing {
        Framing::None => {}
        Framing::Length(n) => {
            let mut body = vec![0; n];
            reader.read_exact(&mut body)?;
            request.body = body;
        }
        Framing::Chunked => request.body = read_chunked(reader, max_body)?,
    }
    Ok(request)
}

fn read_line<R: BufRead>(reader: &mut R) -> Result<String, ReadError> {
    let mut line = Vec::new();
    reader.by_ref().take(4096).read_until(b'\n', &mut line)?;
    if !line.ends_with(b"\n") {
        return Err(ReadError::Malformed("bad chunk framing".into()));
    }
    Ok(String::from_utf8_lossy(&line).trim().to_string())
}

fn read_chunked<R: BufRead>(reader: &mut R, max_body: usize) -> Result<Vec<u8>, ReadError> {
    let mut body = Vec::new();
    loop {
        let line = read_line(reader)?;
        let size_text = line.split(';').next().unwrap_or("").trim();
        let size = usize::from_str_radix(size_text, 16)
            .map_err(|_| ReadError::Malformed("bad chunk size".into()))?;
        if size == 0 {
            // Trailers, up to the blank line.
            while !read_line(reader)?.is_empty() {}
            return Ok(body);
        }
        if body.len() + size > max_body {
            return Err(ReadError::BodyTooLarge);
        }
        let start = body.len();
        body.resize(start + size, 0);
        reader.read_exact(&mut body[start..])?;
        if !read_line(reader)?.is_empty() {
            return Err(ReadError::Malformed("bad chunk framing".into()));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::BufReader;

    fn read(raw: &[u8]) -> Result<Option<Request>, ReadError> {
        let mut reader = BufReader::with_capacity(7, raw);
        read_request(&mut reader, &mut Vec::new(), 1024)
    }

    #[test]
    fn reads_heads_bodies_and_pipelined_requests() {
        let raw = b"POST /rpc?token=a%2Bb+c&x HTTP/1.1\r\nHost: h\r\nContent-Length: 5\r\n\r\nhelloGET /health HTTP/1.0\r\n\r\n";
        let mut reader = BufReader::with_capacity(7, &raw[..]);
        let mut sink = Vec::new();
        let first = read_request(&mut reader, &mut sink, 1024).unwrap().unwrap();
        assert_eq!(
            (first.method.as_str(), first.path.as_str()),
            ("POST", "/rpc")
        );
        assert_eq!(first.body, b"hello");
        assert_eq!(first.query_param("token").as_deref(), Some("a+b c"));
        assert_eq!(first.query_param("x").as_deref(), Some(""));
        assert_eq!(first.query_param("y"), None);
        assert!(first.keep_alive);
        assert_eq!(first.header("host"), Some(&b"h"[..]));
        let second = read_request(&mut reader, &mut sink, 1024).unwrap().unwrap();
        assert_eq!(second.path, "/health");
        assert!(!second.keep_alive, "HTTP/1.0 closes by default");
        assert!(read_request(&mut reader, &mut sink, 1024)
            .unwrap()
            .is_none());
        assert!(sink.is_empty());
    }

    #[test]
    fn chunked_bodies_and_continue() {
        let raw = b"POST /import HTTP/1.1\r\nTransfer-Encoding: chunked\r\nExpect: 100-continue\r\n\r\n3\r\nabc\r\n2;x=y\r\nde\r\n0\r\n\r\n";
        let mut reader = BufReader::new(&raw[..]);
        let mut sink = Vec::new();
        let r = read_request(&mut reader, &mut sink, 1024).unwrap().unwrap();
        assert_eq!(r.body, b"abcde");
        assert_eq!(sink, b"HTTP/1.1 100 Continue\r\n\r\n");
    }

    #[test]
    fn refuses_what_it_cannot_read() {
        assert!(matches!(
            read(b"POST / HTTP/1.1\r\nContent-Length: 2000\r\n\r\n"),
            Err(ReadError::BodyTooLarge)
        ));
        assert!(matches!(
            read(b"\x01\x02 nonsense\r\n\r\n"),
            Err(ReadError::Malformed(_))
        ));
        assert!(matches!(
            read(b"GET / HTTP/1.1\r\nHost"),
            Err(ReadError::Io(_))
        ));
        let huge = format!("GET / HTTP/1.1\r\nX: {}\r\n\r\n", "a".repeat(MAX_HEAD));
        assert!(matches!(
            read(huge.as_bytes()),
            Err(ReadError::HeadTooLarge)
        ));
    }

    #[test]
    fn one_content_length_only() {
        for raw in [
            &b"POST /rpc HTTP/1.1\r\nContent-Length: 0\r\nContent-Length: 34\r\n\r\n"[..],
            b"POST /rpc HTTP/1.1\r\nContent-Length: 3\r\nContent-Length: 3\r\n\r\nabc",
            b"POST /rpc HTTP/1.1\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\ncontent-length: 3\r\n\r\n0\r\n\r\n",
        ] {
            match read(raw) {
                Err(ReadError::Malformed(m)) => assert_eq!(m, "more than one Content-Length header"),
                other => panic!("{other:?}"),
            }
            assert!(parse_buffered(raw, 1024).is_none());
        }
        // Transfer-Encoding wins over a single Content-Length, as before.
        let r = read(b"POST / HTTP/1.1\r\nContent-Length: 99\r\nTransfer-Encoding: chunked\r\n\r\n1\r\nx\r\n0\r\n\r\n")
            .unwrap()
            .unwrap();
        assert_eq!(r.body, b"x");
    }

    #[test]
    fn the_head_limit_is_exact() {
        let head_of = |len: usize| {
            let fixed = "GET / HTTP/1.1\r\nX: \r\n\r\n".len();
            format!("GET / HTTP/1.1\r\nX: {}\r\n\r\n", "a".repeat(len - fixed))
        };
        for (len, fits) in [
            (MAX_HEAD, true),
            (MAX_HEAD + 1, false),
            (70_000, false),
            (MAX_HEAD - 100, true),
        ] {
            let raw = head_of(len);
            assert_eq!(raw.len(), len);
            // Whole in one buffer, and arriving in small pieces.
            for capacity in [128 * 1024, 7, 4096] {
                let mut reader = BufReader::with_capacity(capacity, raw.as_bytes());
                let result = read_request(&mut reader, &mut Vec::new(), 1024);
                match (fits, result) {
                    (true, Ok(Some(_))) | (false, Err(ReadError::HeadTooLarge)) => {}
                    (_, other) => panic!("{len} bytes, buffer {capacity}: {other:?}"),
                }
            }
        }
    }

    #[test]
    fn whole_requests_from_a_buffer() {
        let two = b"POST /rpc HTTP/1.1\r\nContent-Length: 2\r\n\r\n{}GET /health HTTP/1.1\r\n\r\n";
        let (first, n) = parse_buffered(two, 1024).unwrap();
        assert_eq!(
            (first.path.as_str(), first.body.as_slice()),
            ("/rpc", &b"{}"[..])
        );
        let (second, m) = parse_buffered(&two[n..], 1024).unwrap();
        assert_eq!((second.path.as_str(), n + m), ("/health", two.len()));
        for incomplete in [
            &b"POST /rpc HTTP/1.1\r\nContent-Length: 2\r\n\r\n{"[..],
            b"POST /rpc HTTP/1.1\r\nContent-Le",
            b"POST /rpc HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
            b"POST /rpc HTTP/1.1\r\nContent-Length: 2000\r\n\r\n",
            b"\x01 nonsense\r\n\r\n",
        ] {
            assert!(parse_buffered(incomplete, 1024).is_none());
        }
    }
}
