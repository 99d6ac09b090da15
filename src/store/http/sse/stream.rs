//! One `/subscribe` connection on a socket of its own: TCP with keepalive,
//! TLS for `https` (the store's rustls configuration), the request, the
//! response head, and the chunked body read line by line.
//!
//! Every read waits at most the time it is given and keeps what it had read
//! when that time runs out ([`Read::Silent`]), so a quiet stream can be read
//! on after a liveness check. Another thread ends a blocked read by shutting
//! the socket down ([`Interrupt`]).

use std::io::{self, BufRead, BufReader, Write};
use std::net::{Shutdown, TcpStream};
use std::sync::Arc;
use std::time::Duration;

use rustls::{ClientConfig, ClientConnection, StreamOwned};

use crate::error::Result;
pub(crate) use crate::store::http::target::BaseUrl;
use crate::store::http::{client, connection};

/// Longest response head or event line accepted.
const MAX_LINE: usize = 64 * 1024;

/// Socket settings of an event-stream connection.
#[derive(Debug, Clone)]
pub(crate) struct SocketSettings {
    pub(crate) connect_timeout: Duration,
    /// Idle time before the first TCP keepalive probe.
    pub(crate) keepalive_idle: Duration,
    /// Time between keepalive probes.
    pub(crate) keepalive_interval: Duration,
    /// For `https`: the store's rustls configuration.
    pub(crate) tls: Arc<ClientConfig>,
}

/// A handle that ends a blocked read of the connection from another thread.
#[derive(Debug)]
pub(crate) struct Interrupt(TcpStream);

impl Interrupt {
    pub(crate) fn interrupt(&self) {
        let _ = self.0.shutdown(Shutdown::Both);
    }
}

/// The bytes of the connection: plain or TLS.
enum Io {
    Plain(TcpStream),
    Tls(Box<StreamOwned<ClientConnection, TcpStream>>),
}

impl io::Read for Io {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match self {
            Io::Plain(s) => s.read(buf),
            Io::Tls(s) => s.read(buf),
        }
    }
}

impl Write for Io {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match self {
            Io::Plain(s) => s.write(buf),
            Io::Tls(s) => s.write(buf),
        }
    }
    fn flush(&mut self) -> io::Result<()> {
        match self {
            Io::Plain(s) => s.flush(),
            Io::Tls(s) => s.flush(),
        }
    }
}

/// What a read came to.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Read<T> {
    /// Something arrived.
    Ready(T),
    /// Nothing arrived in the time given; the connection may go on.
    Silent,
    /// The server ended the stream.
    End,
}

/// How the response body is framed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Framing {
    /// `Transfer-Encoding: chunked`: bytes left in the current chunk, or
    /// `None` when a size line comes next.
    Chunked(Option<usize>),
    /// `Content-Length`: bytes left.
    Length(usize),
    /// Until the server closes.
    Close,
}

/// An open connection.
pub(crate) struct Connection {
    reader: BufReader<Io>,
    tcp: TcpStream,
    framing: Framing,
    /// The line being assembled (kept across silent reads).
    line: Vec<u8>,
    /// Decoded body bytes not yet split into lines.
    body: Vec<u8>,
    /// After a chunk's data: its CRLF is still to be read.
    chunk_tail: bool,
    ended: bool,
}

/// A response that is not an event stream: status and body.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct Answer {
    pub(crate) status: u16,
    pub(crate) body: Vec<u8>,
}

impl Connection {
    /// Connects (TCP, keepalive, TLS handshake); `register` receives the
    /// interrupt handle before anything can block for long.
    pub(crate) fn open(
        target: &BaseUrl,
        settings: &SocketSettings,
        register: impl FnOnce(Interrupt),
    ) -> Result<Connection> {
        let tcp = connection::dial(target, settings.connect_timeout)?;
        keepalive(&tcp, settings)?;
        register(Interrupt(tcp.try_clone()?));
        let io = if target.tls {
            let conn =
                connection::handshake(&tcp, target, &settings.tls, settings.connect_timeout)?;
            Io::Tls(Box::new(StreamOwned::new(conn, tcp.try_clone()?)))
        } else {
            Io::Plain(tcp.try_clone()?)
        };
        Ok(Connection {
            reader: BufReader::with_capacity(16 * 1024, io),
            tcp,
            framing: Framing::Close,
            line: Vec::new(),
            body: Vec::new(),
            chunk_tail: false,
            ended: false,
        })
    }

    /// Sends `GET <prefix>/subscribe?<query>`.
    pub(crate) fn send_request(
        &mut self,
        target: &BaseUrl,
        query: &str,
        authorization: &str,
        timeout: Duration,
    ) -> io::Result<()> {
        let request = format!(
            "GET {}/subscribe?{query} HTTP/1.1\r\nHost: {}\r\nAuthorization: {authorization}\r\n\
             Accept: text/event-stream\r\nUser-Agent: {}\r\n\r\n",
            target.prefix,
            target.host_header,
            client::USER_AGENT,
        );
        self.tcp.set_write_timeout(Some(timeout))?;
        let out = self.reader.get_mut();
        out.write_all(request.as_bytes())?;
        out.flush()
    }

    /// Reads the response head, waiting at most `wait` for the next bytes.
    /// A 200 answer leaves the body to [`Connection::next_line`]; any other
    /// status is read whole (its body waiting at most `body_timeout` per
    /// read) and returned.
    pub(crate) fn read_head(
        &mut self,
        wait: Duration,
        body_timeout: Duration,
    ) -> io::Result<Read<Option<Answer>>> {
        let mut lines = Vec::new();
        loop {
            match self.raw_line(wait)? {
                Read::Ready(line) if line.is_empty() && lines.is_empty() => continue,
                Read::Ready(line) if line.is_empty() => break,
                Read::Ready(line) => lines.push(line),
                // Nothing of the head yet: the caller may wait again.
                Read::Silent if lines.is_empty() => return Ok(Read::Silent),
                // A head that stops midway is no answer.
                Read::Silent => return Err(io::ErrorKind::TimedOut.into()),
                Read::End => return Ok(Read::End),
            }
        }
        let status_line = String::from_utf8_lossy(&lines[0]).to_string();
        let status = status_line
            .split_whitespace()
            .nth(1)
            .and_then(|s| s.parse::<u16>().ok())
            .filter(|_| status_line.starts_with("HTTP/1."))
            .ok_or_else(|| invalid_data(format!("not an HTTP response: {status_line:?}")))?;
        let mut framing = Framing::Close;
        for line in &lines[1..] {
            let text = String::from_utf8_lossy(line);
            let Some((name, value)) = text.split_once(':') else {
                continue;
            };
            let (name, value) = (name.trim(), value.trim());
            if name.eq_ignore_ascii_case("transfer-encoding")
                && value.to_ascii_lowercase().contains("chunked")
            {
                framing = Framing::Chunked(None);
            } else if name.eq_ignore_ascii_case("content-length") && framing == Framing::Close {
                let n = value
                    .parse()
                    .map_err(|_| invalid_data(format!("bad Content-Length {value:?}")))?;
                framing = Framing::Length(n);
            }
        }
        self.framing = framing;
        if status == 200 {
            return Ok(Read::Ready(None));
        }
        let mut body = Vec::new();
        loop {
            match self.read_body(body_timeout)? {
                Read::Ready(()) => body.append(&mut self.body),
                Read::Silent => return Err(io::ErrorKind::TimedOut.into()),
                Read::End => break,
            }
            if body.len() > MAX_LINE {
                break;
            }
        }
        Ok(Read::Ready(Some(Answer { status, body })))
    }

    /// The next line of the event stream (without its line ending),
    /// waiting at most `wait` for the next bytes.
    pub(crate) fn next_line(&mut self, wait: Duration) -> io::Result<Read<String>> {
        loop {
            if let Some(end) = self.body.iter().position(|&b| b == b'\n') {
                let mut line: Vec<u8> = self.body.drain(..=end).collect();
                line.pop();
                if line.last() == Some(&b'\r') {
                    line.pop();
                }
                return Ok(Read::Ready(String::from_utf8_lossy(&line).into_owned()));
            }
            if self.body.len() > MAX_LINE {
                return Err(invalid_data("an event line longer than 64 KiB".into()));
            }
            match self.read_body(wait)? {
                Read::Ready(()) => {}
                Read::Silent => return Ok(Read::Silent),
                Read::End => return Ok(Read::End),
            }
        }
    }

    /// Appends the next decoded body bytes to `self.body`.
    fn read_body(&mut self, wait: Duration) -> io::Result<Read<()>> {
        loop {
            if self.ended {
                return Ok(Read::End);
            }
            match self.framing {
                Framing::Chunked(None) => {
                    if self.chunk_tail {
                        match self.raw_line(wait)? {
                            Read::Ready(_) => self.chunk_tail = false,
                            Read::Silent => return Ok(Read::Silent),
                            Read::End => return Ok(Read::End),
                        }
                        continue;
                    }
                    let line = match self.raw_line(wait)? {
                        Read::Ready(line) => line,
                        Read::Silent => return Ok(Read::Silent),
                        Read::End => return Ok(Read::End),
                    };
                    let text = String::from_utf8_lossy(&line);
                    let size = text.split(';').next().unwrap_or("").trim();
                    let size = usize::from_str_radix(size, 16)
                        .map_err(|_| invalid_data(format!("bad chunk size {text:?}")))?;
                    if size == 0 {
                        self.ended = true;
                        return Ok(Read::End);
                    }
                    self.framing = Framing::Chunked(Some(size));
                }
                Framing::Chunked(Some(left)) | Framing::Length(left) => {
                    if left == 0 {
                        self.ended = true;
                        return Ok(Read::End);
                    }
                    let data = match fill(&mut self.reader, &self.tcp, wait)? {
                        Read::Ready(data) => data,
                        Read::Silent => return Ok(Read::Silent),
                        Read::End => return Ok(Read::End),
                    };
                    let n = data.len().min(left);
                    self.body.extend_from_slice(&data[..n]);
                    self.reader.consume(n);
                    self.framing = match self.framing {
                        Framing::Chunked(_) if n == left => {
                            self.chunk_tail = true;
                            Framing::Chunked(None)
                        }
                        Framing::Chunked(_) => Framing::Chunked(Some(left - n)),
                        _ => Framing::Length(left - n),
                    };
                    return Ok(Read::Ready(()));
                }
                Framing::Close => {
                    let data = match fill(&mut self.reader, &self.tcp, wait)? {
                        Read::Ready(data) => data,
                        other => return Ok(map_empty(other)),
                    };
                    let n = data.len();
                    self.body.extend_from_slice(data);
                    self.reader.consume(n);
                    return Ok(Read::Ready(()));
                }
            }
        }
    }

    /// One line of the raw connection (head, chunk sizes), without CRLF.
    fn raw_line(&mut self, wait: Duration) -> io::Result<Read<Vec<u8>>> {
        loop {
            let data = match fill(&mut self.reader, &self.tcp, wait)? {
                Read::Ready(data) => data,
                other => return Ok(map_empty(other)),
            };
            match data.iter().position(|&b| b == b'\n') {
                Some(end) => {
                    self.line.extend_from_slice(&data[..end]);
                    self.reader.consume(end + 1);
                    let mut line = std::mem::take(&mut self.line);
                    if line.last() == Some(&b'\r') {
                        line.pop();
                    }
                    return Ok(Read::Ready(line));
                }
                None => {
                    let n = data.len();
                    self.line.extend_from_slice(data);
                    self.reader.consume(n);
                    if self.line.len() > MAX_LINE {
                        return Err(invalid_data("a response line longer than 64 KiB".into()));
                    }
                }
            }
        }
    }
}

/// The buffered bytes, reading more (waiting at most `wait`) when none are.
fn fill<'a>(
    reader: &'a mut BufReader<Io>,
    tcp: &TcpStream,
    wait: Duration,
) -> io::Result<Read<&'a [u8]>> {
    if reader.buffer().is_empty() {
        tcp.set_read_timeout(Some(wait.max(Duration::from_millis(1))))?;
    }
    match reader.fill_buf() {
        Ok([]) => Ok(Read::End),
        Ok(data) => Ok(Read::Ready(data)),
        Err(e)
            if matches!(
                e.kind(),
                io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut | io::ErrorKind::Interrupted
            ) =>
        {
            Ok(Read::Silent)
        }
        Err(e) => Err(e),
    }
}

fn map_empty<T, U>(read: Read<T>) -> Read<U> {
    match read {
        Read::Silent => Read::Silent,
        _ => Read::End,
    }
}

fn invalid_data(message: String) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, message)
}

/// TCP keepalive: the operating system probes a quiet connection and ends
/// it (the read fails) when the peer stops answering.
fn keepalive(tcp: &TcpStream, settings: &SocketSettings) -> io::Result<()> {
    let second = Duration::from_secs(1);
    let params = socket2::TcpKeepalive::new().with_time(settings.keepalive_idle.max(second));
    #[cfg(any(
        target_os = "linux",
        target_os = "android",
        target_os = "macos",
        target_os = "ios",
        target_os = "freebsd",
        target_os = "windows"
    ))]
    let params = params.with_interval(settings.keepalive_interval.max(second));
    socket2::SockRef::from(tcp).set_tcp_keepalive(&params)
}

/// Percent-encodes a query value (everything but unreserved characters).
pub(crate) fn encode_query(pairs: &[(&str, String)]) -> String {
    let mut out = String::new();
    for (i, (key, value)) in pairs.iter().enumerate() {
        if i > 0 {
            out.push('&');
        }
        out.push_str(key);
        out.push('=');
        for b in value.bytes() {
            if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
                out.push(b as char);
            } else {
                out.push_str(&format!("%{b:02X}"));
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Read as _;
    use std::net::TcpListener;

    #[test]
    fn queries() {
        assert_eq!(
            encode_query(&[("stream", "café-1 & co".into()), ("position", "3".into())]),
            "stream=caf%C3%A9-1%20%26%20co&position=3"
        );
    }

    /// Serves `script` in pieces, pausing where it says `|`.
    fn serve(script: &'static str) -> (BaseUrl, std::thread::JoinHandle<()>) {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let target = BaseUrl::parse(&format!("http://{}", listener.local_addr().unwrap())).unwrap();
        let t = std::thread::spawn(move || {
            let (mut s, _) = listener.accept().unwrap();
            let mut buf = [0u8; 1024];
            let _ = s.read(&mut buf).unwrap();
            for piece in script.split('|') {
                s.write_all(piece.as_bytes()).unwrap();
                // The reader times out between pieces, then reads on.
                let _ = s.read(&mut buf);
            }
        });
        (target, t)
    }

    fn settings() -> SocketSettings {
        SocketSettings {
            connect_timeout: Duration::from_secs(5),
            keepalive_idle: Duration::from_secs(30),
            keepalive_interval: Duration::from_secs(5),
            tls: crate::TlsSettings::new().rustls_client_config().unwrap(),
        }
    }

    #[test]
    fn chunked_events_survive_silent_reads() {
        let (target, server) = serve(
            "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n9\r\n: ready\n\n\r\n|1\r\ne\r\n|e\r\nvent: poke\ndat|\r\n4\r\na: x\r\n2\r\n\n\n\r\n0\r\n\r\n",
        );
        let mut c = Connection::open(&target, &settings(), |_| {}).unwrap();
        c.send_request(&target, "all=true", "Bearer x", Duration::from_secs(5))
            .unwrap();
        let short = Duration::from_millis(50);
        let long = Duration::from_secs(5);
        assert_eq!(c.read_head(long, long).unwrap(), Read::Ready(None));
        let mut lines = Vec::new();
        let mut silent = 0;
        loop {
            match c.next_line(short).unwrap() {
                Read::Ready(line) => lines.push(line),
                Read::Silent => {
                    silent += 1;
                    // Let the server send the next piece.
                    c.tcp.write_all(b"x").unwrap();
                }
                Read::End => break,
            }
        }
        assert_eq!(lines, [": ready", "", "event: poke", "data: x", ""]);
        assert!(silent >= 3, "{silent}");
        drop(c);
        server.join().unwrap();
    }

    #[test]
    fn other_answers_are_read_whole() {
        let (target, server) =
            serve("HTTP/1.1 403 Forbidden\r\nContent-Length: 11\r\n\r\n{\"error\":1}");
        let mut c = Connection::open(&target, &settings(), |_| {}).unwrap();
        c.send_request(&target, "all=true", "Bearer x", Duration::from_secs(5))
            .unwrap();
        let long = Duration::from_secs(5);
        match c.read_head(long, long).unwrap() {
            Read::Ready(Some(a)) => {
                assert_eq!((a.status, &a.body[..]), (403, &b"{\"error\":1}"[..]))
            }
            other => panic!("{other:?}"),
        }
        drop(c);
        server.join().unwrap();
    }
}
