//! Writing a response: in one `write` (so that, with `TCP_NODELAY`, it
//! leaves in as few packets as possible), and chunks for SSE streams.

use std::io::{self, Write};
use std::time::SystemTime;

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
        408 => "Request Timeout",
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
