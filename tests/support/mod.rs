//! Helpers for the server tests: plain HTTP requests with exact bodies and
//! headers, as any EventoDB client would send them.

#![allow(dead_code)]

use std::io::{BufRead, BufReader, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

use eventodb_kit::server::{Server, ServerConfig};
use serde_json::Value;

/// A response as it came over the wire.
#[derive(Debug)]
pub struct Answer {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: String,
}

impl Answer {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    pub fn json(&self) -> Value {
        serde_json::from_str(&self.body)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {:?}", self.body))
    }

    /// `(code, message)` of an error envelope.
    pub fn error(&self) -> (String, String) {
        let v = self.json();
        let e = &v["error"];
        (
            e["code"].as_str().unwrap_or_default().to_string(),
            e["message"].as_str().unwrap_or_default().to_string(),
        )
    }
}

/// A plain ureq agent that reports every status as a response.
pub fn agent() -> ureq::Agent {
    ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_global(Some(Duration::from_secs(30)))
        .build()
        .new_agent()
}

/// Reads a whole ureq response.
pub fn answer(mut response: ureq::http::Response<ureq::Body>) -> Answer {
    let status = response.status().as_u16();
    let headers = response
        .headers()
        .iter()
        .map(|(n, v)| (n.to_string(), v.to_str().unwrap_or_default().to_string()))
        .collect();
    let body = response
        .body_mut()
        .with_config()
        .limit(u64::MAX)
        .read_to_string()
        .unwrap();
    Answer {
        status,
        headers,
        body,
    }
}

/// `POST {url}/rpc` with `body`, and `Authorization: Bearer <token>` if given.
pub fn rpc(url: &str, token: Option<&str>, body: &str) -> Answer {
    let mut req = agent().post(format!("{url}/rpc"));
    if let Some(t) = token {
        req = req.header("Authorization", format!("Bearer {t}"));
    }
    answer(req.send(body).unwrap())
}

/// `POST {url}{path}` with `body` and an exact `Authorization` header value.
pub fn post_with_header(url: &str, path: &str, authorization: &str, body: &str) -> Answer {
    answer(
        agent()
            .post(format!("{url}{path}"))
            .header("Authorization", authorization)
            .send(body)
            .unwrap(),
    )
}

/// `GET {url}{path}`, with a bearer token if given.
pub fn get(url: &str, path: &str, token: Option<&str>) -> Answer {
    let mut req = agent().get(format!("{url}{path}"));
    if let Some(t) = token {
        req = req.header("Authorization", format!("Bearer {t}"));
    }
    answer(req.call().unwrap())
}

/// Sends `raw` bytes and reads one response (Content-Length or close-delimited).
pub fn raw(addr: SocketAddr, raw: &[u8]) -> Answer {
    let mut stream = TcpStream::connect(addr).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(30)))
        .unwrap();
    stream.write_all(raw).unwrap();
    let mut reader = BufReader::new(stream);
    read_answer(&mut reader)
}

/// Reads one response from `reader` (Content-Length bodies only).
pub fn read_answer<R: BufRead>(reader: &mut R) -> Answer {
    let mut line = String::new();
    reader.read_line(&mut line).unwrap();
    let status: u16 = line
        .split_whitespace()
        .nth(1)
        .unwrap_or_else(|| panic!("no status line: {line:?}"))
        .parse()
        .unwrap();
    let mut headers = Vec::new();
    loop {
        let mut h = String::new();
        reader.read_line(&mut h).unwrap();
        let h = h.trim_end();
        if h.is_empty() {
            break;
        }
        let (n, v) = h.split_once(':').unwrap();
        headers.push((n.to_string(), v.trim().to_string()));
    }
    let length = headers
        .iter()
        .find(|(n, _)| n.eq_ignore_ascii_case("content-length"))
        .map(|(_, v)| v.parse::<usize>().unwrap());
    let mut body = Vec::new();
    match length {
        _ if (100..200).contains(&status) => {}
        Some(n) => {
            body.resize(n, 0);
            reader.read_exact(&mut body).unwrap();
        }
        None => {
            reader.read_to_end(&mut body).unwrap();
        }
    }
    Answer {
        status,
        headers,
        body: String::from_utf8(body).unwrap(),
    }
}

/// A server in memory and its default token.
pub fn server() -> (Server, String) {
    let server = Server::start(ServerConfig::new()).unwrap();
    let token = server.default_token().unwrap().expose_secret().to_string();
    (server, token)
}

/// Asserts that the server still answers.
pub fn still_serving(server: &Server, token: &str) {
    let a = rpc(&server.url(), Some(token), r#"["sys.health"]"#);
    assert_eq!(a.status, 200, "{a:?}");
}

/// Checks status, code and message of an error answer.
#[track_caller]
pub fn expect_error(a: &Answer, status: u16, code: &str, message: &str) {
    assert_eq!(a.status, status, "{a:?}");
    assert_eq!(a.error(), (code.to_string(), message.to_string()), "{a:?}");
    assert!(
        a.body.ends_with("}\n"),
        "RPC errors end with a newline: {a:?}"
    );
    assert_eq!(a.header("content-type"), Some("application/json"));
}
