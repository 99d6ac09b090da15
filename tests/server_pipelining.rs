//! `eventodb-kit serve` and HTTP/1.1 pipelining, over raw sockets: many
//! requests sent before any answer is read are answered in order, each with
//! its own status, whatever their mix and however TCP splits them.
#![cfg(feature = "server")]

mod support;

use std::io::{BufReader, Write};
use std::net::TcpStream;
use std::time::Duration;

use eventodb_kit::MessageStore;
use serde_json::json;
use support::{read_answer, server, Answer};

fn post(token: &str, body: &str) -> String {
    format!(
        "POST /rpc HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {token}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    )
}

fn write(token: &str, stream: &str, n: i64) -> String {
    post(
        token,
        &json!(["stream.write", stream, { "type": "T", "data": { "n": n } }]).to_string(),
    )
}

fn connect(server: &eventodb_kit::server::Server) -> (TcpStream, BufReader<TcpStream>) {
    let stream = TcpStream::connect(server.addr()).unwrap();
    stream.set_nodelay(true).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(30)))
        .unwrap();
    let reader = BufReader::new(stream.try_clone().unwrap());
    (stream, reader)
}

fn read_n(reader: &mut BufReader<TcpStream>, n: usize) -> Vec<Answer> {
    (0..n).map(|_| read_answer(reader)).collect()
}

#[test]
fn a_hundred_pipelined_writes_in_one_send() {
    let (server, token) = server();
    let (mut stream, mut reader) = connect(&server);
    let all: String = (0..100).map(|n| write(&token, "pipe-1", n)).collect();
    stream.write_all(all.as_bytes()).unwrap();
    for (n, answer) in read_n(&mut reader, 100).into_iter().enumerate() {
        assert_eq!(answer.status, 200, "{answer:?}");
        assert_eq!(
            answer.json(),
            json!({ "position": n, "globalPosition": n + 1 }),
            "answer {n} in order"
        );
        assert_eq!(answer.header("connection"), None, "kept alive");
    }
    // The store has them in the order sent, and the connection still works.
    let messages = server
        .store()
        .get_stream("pipe-1", &eventodb_kit::StreamQuery::new())
        .unwrap();
    let ns: Vec<i64> = messages
        .iter()
        .map(|m| m.data["n"].as_i64().unwrap())
        .collect();
    assert_eq!(ns, (0..100).collect::<Vec<_>>());
    stream
        .write_all(post(&token, r#"["stream.version","pipe-1"]"#).as_bytes())
        .unwrap();
    assert_eq!(read_answer(&mut reader).body, "99\n");
}

#[test]
fn a_pipelined_mix_is_answered_in_order() {
    let (server, token) = server();
    let other = server
        .store()
        .create_namespace("other", "", None)
        .unwrap()
        .token;
    let (mut stream, mut reader) = connect(&server);
    let requests = [
        write(&token, "mix-1", 0),
        post(&token, r#"["stream.get","mix-1"]"#),
        post(&token, r#"["stream.write", "mix-1", {"#),
        write(other.expose_secret(), "mix-1", 1),
        write(&token, "mix-1", 2),
        "GET /health HTTP/1.1\r\nHost: x\r\n\r\n".to_string(),
        write(&token, "mix-1", 3),
        write("ns_bm9wZQ_x", "mix-1", 4),
        write(&token, "mix-1", 5),
    ]
    .concat();
    stream.write_all(requests.as_bytes()).unwrap();
    let answers = read_n(&mut reader, 9);
    let statuses: Vec<u16> = answers.iter().map(|a| a.status).collect();
    assert_eq!(statuses, [200, 200, 400, 200, 200, 200, 200, 401, 200]);
    assert_eq!(
        answers[0].json(),
        json!({ "position": 0, "globalPosition": 1 })
    );
    assert_eq!(
        answers[1].json()[0][4],
        json!({ "n": 0 }),
        "the get sees the write before it"
    );
    assert_eq!(answers[2].error().1, "Malformed JSON request");
    assert_eq!(
        answers[3].json(),
        json!({ "position": 0, "globalPosition": 1 }),
        "written into the other namespace"
    );
    assert_eq!(
        answers[4].json(),
        json!({ "position": 1, "globalPosition": 2 })
    );
    assert_eq!(answers[5].body, r#"{"status":"ok"}"#);
    assert_eq!(
        answers[6].json(),
        json!({ "position": 2, "globalPosition": 3 })
    );
    assert_eq!(answers[7].error().0, "AUTH_INVALID_TOKEN");
    assert_eq!(
        answers[8].json(),
        json!({ "position": 3, "globalPosition": 4 })
    );
}

#[test]
fn requests_split_across_sends() {
    let (server, token) = server();
    let (mut stream, mut reader) = connect(&server);
    // One request in three pieces, cut inside the head and inside the body.
    let one = write(&token, "split-1", 0);
    let (a, rest) = one.split_at(20);
    let (b, c) = rest.split_at(rest.len() - 5);
    for piece in [a, b, c] {
        stream.write_all(piece.as_bytes()).unwrap();
        stream.flush().unwrap();
    }
    assert_eq!(
        read_answer(&mut reader).json(),
        json!({ "position": 0, "globalPosition": 1 })
    );
    // A pipelined run cut in the middle of its eleventh request.
    let run: String = (1..=16).map(|n| write(&token, "split-1", n)).collect();
    let cut = (0..10)
        .map(|n| write(&token, "split-1", n + 1).len())
        .sum::<usize>()
        + 37;
    stream.write_all(&run.as_bytes()[..cut]).unwrap();
    stream.flush().unwrap();
    stream.write_all(&run.as_bytes()[cut..]).unwrap();
    for (n, answer) in read_n(&mut reader, 16).into_iter().enumerate() {
        assert_eq!(
            answer.json(),
            json!({ "position": n + 1, "globalPosition": n + 2 }),
            "answer {n}"
        );
    }
    // And a request that closes the connection ends the run.
    let version = r#"["stream.version","split-1"]"#;
    let closing = format!(
        "POST /rpc HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {token}\r\nConnection: close\r\nContent-Length: {}\r\n\r\n{version}",
        version.len()
    );
    stream
        .write_all((write(&token, "split-1", 17) + &closing).as_bytes())
        .unwrap();
    let answers = read_n(&mut reader, 2);
    assert_eq!(answers[1].body, "17\n");
    assert_eq!(answers[1].header("connection"), Some("close"));
}
