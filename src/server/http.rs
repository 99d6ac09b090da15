//! A small HTTP/1.1 codec for the server: reading a request (head with
//! httparse, body by `Content-Length` or chunked), writing a response in one
//! `write` (so that, with `TCP_NODELAY`, it leaves in as few packets as
//! possible), and chunked streams for SSE.

use std::io::{self, BufRead, Read, Write};
use std::time::SystemTime;

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

fn decode_component(s: &str) -> String {
    let spaced = s.replace('+', " ");
    percent_encoding::percent_decode_str(&spaced)
        .decode_utf8_lossy()
        .into_owned()
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

/// Reads the next request. `Ok(None)`: the client closed the connection
/// between requests. `continue_to` receives `100 Continue` when the client
/// asks for it.
pub(crate) fn read_request<R: BufRead, W: Write>(
    reader: &mut R,
    continue_to: &mut W,
    max_body: usize,
) -> Result<Option<Request>, ReadError> {
    let mut head = Vec::with_capacity(1024);
    let (method, target, version, headers) = loop {
        let available = reader.fill_buf()?;
        if available.is_empty() {
            return if head.is_empty() {
                Ok(None)
            } else {
                Err(ReadError::Io(io::ErrorKind::UnexpectedEof.into()))
            };
        }
        let before = head.len();
        let taken = available.len();
        head.extend_from_slice(available);
        let mut slots = [httparse::EMPTY_HEADER; MAX_HEADERS];
        let mut parsed = httparse::Request::new(&mut slots);
        match parsed.parse(&head) {
            Ok(httparse::Status::Complete(n)) => {
                reader.consume(n - before);
                let headers: Vec<(String, Vec<u8>)> = parsed
                    .headers
                    .iter()
                    .map(|h| (h.name.to_ascii_lowercase(), h.value.to_vec()))
                    .collect();
                break (
                    parsed.method.unwrap_or("GET").to_string(),
                    parsed.path.unwrap_or("/").to_string(),
                    parsed.version.unwrap_or(1),
                    headers,
                );
            }
            Ok(httparse::Status::Partial) => {
                reader.consume(taken);
                if head.len() > MAX_HEAD {
                    return Err(ReadError::HeadTooLarge);
                }
            }
            Err(httparse::Error::TooManyHeaders) => return Err(ReadError::HeadTooLarge),
            Err(e) => return Err(ReadError::Malformed(e.to_string())),
        }
    };
    let (path, query) = match target.split_once('?') {
        Some((p, q)) => (normalize_path(p), q.to_string()),
        None => (normalize_path(&target), String::new()),
    };
    let mut request = Request {
        method,
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
    let chunked = request.header("transfer-encoding").is_some_and(|v| {
        String::from_utf8_lossy(v)
            .to_ascii_lowercase()
            .contains("chunked")
    });
    let length = match request.header("content-length") {
        Some(v) if !chunked => Some(
            std::str::from_utf8(v)
                .ok()
                .and_then(|s| s.trim().parse::<u64>().ok())
                .ok_or_else(|| ReadError::Malformed("invalid Content-Length".into()))?,
        ),
        _ => None,
    };
    if length.is_some_and(|n| n > max_body as u64) {
        return Err(ReadError::BodyTooLarge);
    }
    let has_body = chunked || length.is_some_and(|n| n > 0);
    let wants_continue = request
        .header("expect")
        .is_some_and(|v| v.eq_ignore_ascii_case(b"100-continue"));
    if has_body && wants_continue && version == 1 {
        continue_to.write_all(b"HTTP/1.1 100 Continue\r\n\r\n")?;
        continue_to.flush()?;
    }
    if chunked {
        request.body = read_chunked(reader, max_body)?;
    } else if let Some(n) = length {
        let mut body = vec![0; n as usize];
        reader.read_exact(&mut body)?;
        request.body = body;
    }
    Ok(Some(request))
}

/// The path a request target names, as fasthttp (EventoDB's server) gives
/// it to the router: without scheme and host (absolute form), percent-
/// decoded, with `//` collapsed and `.` and `..` segments resolved. A
/// trailing slash stays (`/rpc/` is not `/rpc`).
fn normalize_path(target: &str) -> String {
    let target = ["http://", "https://"]
        .iter()
        .find_map(|scheme| target.strip_prefix(scheme))
        .map_or(target, |rest| rest.find('/').map_or("/", |i| &rest[i..]));
    let decoded = percent_encoding::percent_decode_str(target).decode_utf8_lossy();
    let mut segments: Vec<&str> = Vec::new();
    let mut last = "";
    for segment in decoded.split('/').filter(|s| !s.is_empty()) {
        match segment {
            "." => {}
            ".." => {
                segments.pop();
            }
            s => segments.push(s),
        }
        last = segment;
    }
    let mut path = format!("/{}", segments.join("/"));
    let directory = decoded.ends_with('/') || matches!(last, "." | "..");
    if directory && !segments.is_empty() {
        path.push('/');
    }
    path
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

/// A complete response.
#[derive(Debug, Clone)]
pub(crate) struct Response {
    pub(crate) status: u16,
    pub(crate) content_type: &'static str,
    pub(crate) headers: Vec<(&'static str, &'static str)>,
    pub(crate) body: Vec<u8>,
}

/// `application/json`.
pub(crate) const JSON: &str = "application/json";
/// `text/plain; charset=utf-8`.
pub(crate) const TEXT: &str = "text/plain; charset=utf-8";

impl Response {
    pub(crate) fn new(status: u16, content_type: &'static str, body: Vec<u8>) -> Self {
        Response {
            status,
            content_type,
            headers: Vec::new(),
            body,
        }
    }

    pub(crate) fn header(mut self, name: &'static str, value: &'static str) -> Self {
        self.headers.push((name, value));
        self
    }

    /// Writes the response in one piece.
    pub(crate) fn write_to<W: Write>(
        &self,
        out: &mut W,
        server: &str,
        keep_alive: bool,
        head_only: bool,
    ) -> io::Result<()> {
        let headers: Vec<(&str, &str)> = self
            .headers
            .iter()
            .copied()
            .filter(|(name, _)| keep_alive || !name.eq_ignore_ascii_case("connection"))
            .collect();
        let mut bytes = head(self.status, server, self.content_type, &headers);
        bytes.extend_from_slice(format!("Content-Length: {}\r\n", self.body.len()).as_bytes());
        if !keep_alive {
            bytes.extend_from_slice(b"Connection: close\r\n");
        }
        bytes.extend_from_slice(b"\r\n");
        if !head_only {
            bytes.extend_from_slice(&self.body);
        }
        out.write_all(&bytes)?;
        out.flush()
    }
}

/// Status line and common headers, without the blank line.
pub(crate) fn head(
    status: u16,
    server: &str,
    content_type: &str,
    headers: &[(&str, &str)],
) -> Vec<u8> {
    let mut out = Vec::with_capacity(256);
    let date = httpdate::fmt_http_date(SystemTime::now());
    out.extend_from_slice(
        format!(
            "HTTP/1.1 {status} {}\r\nServer: {server}\r\nDate: {date}\r\nContent-Type: {content_type}\r\n",
            reason(status)
        )
        .as_bytes(),
    );
    for (name, value) in headers {
        out.extend_from_slice(format!("{name}: {value}\r\n").as_bytes());
    }
    out
}

/// A chunk of a chunked body.
pub(crate) fn chunk(data: &[u8]) -> Vec<u8> {
    let mut out = format!("{:x}\r\n", data.len()).into_bytes();
    out.extend_from_slice(data);
    out.extend_from_slice(b"\r\n");
    out
}

/// The end of a chunked body.
pub(crate) const LAST_CHUNK: &[u8] = b"0\r\n\r\n";

fn reason(status: u16) -> &'static str {
    match status {
        200 => "OK",
        400 => "Bad Request",
        401 => "Unauthorized",
        403 => "Forbidden",
        404 => "Not Found",
        405 => "Method Not Allowed",
        409 => "Conflict",
        413 => "Request Entity Too Large",
        431 => "Request Header Fields Too Large",
        500 => "Internal Server Error",
        503 => "Service Unavailable",
        _ => "Unknown",
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
    fn paths_like_fasthttp() {
        for (target, path) in [
            ("/rpc", "/rpc"),
            ("/rpc/", "/rpc/"),
            ("//rpc", "/rpc"),
            ("/a//b/./c/../d", "/a/b/d"),
            ("/a/b/..", "/a/"),
            ("/a/b/.", "/a/b/"),
            ("/../../rpc", "/rpc"),
            ("/r%70c", "/rpc"),
            ("/a%2Fb", "/a/b"),
            ("/", "/"),
            ("", "/"),
            ("http://h:1/health", "/health"),
            ("https://h", "/"),
        ] {
            assert_eq!(normalize_path(target), path, "{target}");
        }
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
    fn writes_one_piece() {
        let mut out = Vec::new();
        Response::new(200, JSON, b"{}\n".to_vec())
            .write_to(&mut out, "EventoDB/0.7.0", false, false)
            .unwrap();
        let text = String::from_utf8(out).unwrap();
        assert!(text.starts_with("HTTP/1.1 200 OK\r\nServer: EventoDB/0.7.0\r\nDate: "));
        assert!(text.ends_with(
            "Content-Type: application/json\r\nContent-Length: 3\r\nConnection: close\r\n\r\n{}\n"
        ));
        assert_eq!(chunk(b"abc"), b"3\r\nabc\r\n");
    }
}
