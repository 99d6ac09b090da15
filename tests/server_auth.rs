//! `eventodb-kit serve`'s authentication and namespaces on the wire:
//! 401/403 rules, tokens minted by `ns.create`, isolation, deleted
//! namespaces, and test mode's relaxations.
#![cfg(feature = "server")]

mod support;

use eventodb_kit::server::{Server, ServerConfig};
use serde_json::json;
use support::{expect_error, get, post_with_header, rpc, server, still_serving};

#[test]
fn authentication_rules() {
    let (server, token) = server();
    let url = server.url();
    let body = r#"["sys.version"]"#;
    expect_error(
        &rpc(&url, None, body),
        401,
        "AUTH_REQUIRED",
        "Authorization header required",
    );
    expect_error(
        &post_with_header(&url, "/rpc", "Basic abc", body),
        401,
        "AUTH_REQUIRED",
        "Authorization header must use Bearer scheme",
    );
    expect_error(
        &post_with_header(&url, "/rpc", "bearer abc", body),
        401,
        "AUTH_REQUIRED",
        "Authorization header must use Bearer scheme",
    );
    let malformed = rpc(&url, Some("abc"), body);
    expect_error(
        &malformed,
        401,
        "AUTH_INVALID_TOKEN",
        "Invalid token format",
    );
    assert_eq!(
        malformed.json()["error"]["details"]["error"],
        "invalid token format: missing 'ns_' prefix"
    );
    // Go's base64 decoder: its error offsets, and no complaint about the
    // unused bits of the last symbol ("YR" reads as "a", like "YQ").
    let dangling = rpc(&url, Some(&format!("ns_YWJjZ_{}", "0".repeat(64))), body);
    assert_eq!(
        dangling.json()["error"]["details"]["error"],
        "invalid token format: namespace part is not valid base64url: illegal base64 data at input byte 4"
    );
    // Go's hex decoder names the first byte that is not hex.
    let accented = support::agent()
        .post(format!(
            "{url}/rpc?token=ns_ZGVmYXVsdA_%C3%A9{}",
            "0".repeat(62)
        ))
        .send(body)
        .unwrap();
    assert_eq!(
        support::answer(accented).json()["error"]["details"]["error"],
        "invalid token format: random part is not valid hexadecimal: encoding/hex: invalid byte: U+00C3 'Ã'"
    );
    let loose = rpc(&url, Some(&format!("ns_YR_{}", "0".repeat(64))), body);
    expect_error(
        &loose,
        403,
        "AUTH_UNAUTHORIZED",
        "Token not authorized for namespace",
    );
    assert_eq!(loose.json()["error"]["details"], json!({"namespace": "a"}));
    let foreign = format!("ns_dGVuYW50LWE_{}", "0".repeat(64));
    let a = rpc(&url, Some(&foreign), body);
    expect_error(
        &a,
        403,
        "AUTH_UNAUTHORIZED",
        "Token not authorized for namespace",
    );
    assert_eq!(
        a.json()["error"]["details"],
        json!({"namespace": "tenant-a"})
    );
    let wrong_secret = format!("ns_ZGVmYXVsdA_{}", "0".repeat(64));
    expect_error(
        &rpc(&url, Some(&wrong_secret), body),
        403,
        "AUTH_UNAUTHORIZED",
        "Token not authorized for namespace",
    );
    // Auth comes first: garbage or a GET without a token is a 401.
    expect_error(
        &rpc(&url, None, "{{{"),
        401,
        "AUTH_REQUIRED",
        "Authorization header required",
    );
    expect_error(
        &get(&url, "/rpc", None),
        401,
        "AUTH_REQUIRED",
        "Authorization header required",
    );
    expect_error(
        &get(&url, "/rpc", Some(&token)),
        405,
        "INVALID_REQUEST",
        "Only POST method allowed",
    );
    // The token may come in the query string instead.
    let q = support::agent()
        .post(format!("{url}/rpc?token={token}"))
        .send(body)
        .unwrap();
    assert_eq!(q.status().as_u16(), 200);
    let ok = rpc(&url, Some(&token), body);
    assert_eq!((ok.status, ok.body.as_str()), (200, "\"0.7.0\"\n"));
}

#[test]
fn namespaces_tokens_and_isolation() {
    let (server, token) = server();
    let url = server.url();
    let created = rpc(
        &url,
        Some(&token),
        r#"["ns.create","tenant-a",{"description":"A"}]"#,
    );
    assert_eq!(created.status, 200, "{created:?}");
    let c = created.json();
    assert_eq!(c["namespace"], "tenant-a");
    let a_token = c["token"].as_str().unwrap().to_string();
    assert!(
        a_token.starts_with("ns_dGVuYW50LWE_") && a_token.len() == "ns_dGVuYW50LWE_".len() + 64
    );
    assert!(c["createdAt"].as_str().unwrap().ends_with('Z'));
    // Any valid token may create namespaces, with a token of its choice.
    let b_token = format!("ns_dGVuYW50LWI_{}", "ab".repeat(32));
    let b = rpc(
        &url,
        Some(&a_token),
        &json!(["ns.create", "tenant-b", {"token": b_token}]).to_string(),
    );
    assert_eq!(b.json()["token"], b_token.as_str());

    let write = |t: &str, stream: &str| {
        rpc(
            &url,
            Some(t),
            &json!(["stream.write", stream, {"type": "T", "data": {}}]).to_string(),
        )
    };
    assert_eq!(write(&a_token, "x-1").json()["globalPosition"], 1);
    assert_eq!(
        write(&b_token, "x-1").json()["globalPosition"],
        1,
        "each namespace counts from 1"
    );
    assert_eq!(write(&b_token, "x-2").json()["globalPosition"], 2);
    let all_a = rpc(&url, Some(&a_token), r#"["category.get",""]"#).json();
    assert_eq!(
        all_a.as_array().unwrap().len(),
        1,
        "A sees only its own messages"
    );
    let default_sees = rpc(&url, Some(&token), r#"["stream.get","x-1"]"#).json();
    assert_eq!(default_sees, json!([]));

    let list = rpc(&url, Some(&token), r#"["ns.list"]"#).json();
    let names: Vec<&str> = list
        .as_array()
        .unwrap()
        .iter()
        .map(|n| n["namespace"].as_str().unwrap())
        .collect();
    assert!(
        names.contains(&"tenant-a") && names.contains(&"default"),
        "{names:?}"
    );
    assert!(list
        .as_array()
        .unwrap()
        .iter()
        .all(|n| n["description"].is_string() && n["messageCount"] == 0));
    let info = rpc(&url, Some(&token), r#"["ns.info","tenant-b"]"#).json();
    assert_eq!(info["messageCount"], 2);
    assert_eq!(info["streamCount"], 0);
    assert!(info["lastActivity"].is_null());

    let deleted = rpc(&url, Some(&token), r#"["ns.delete","tenant-a"]"#).json();
    assert_eq!(
        (
            deleted["namespace"].as_str(),
            deleted["messagesDeleted"].as_i64()
        ),
        (Some("tenant-a"), Some(0))
    );
    expect_error(
        &write(&a_token, "x-1"),
        403,
        "AUTH_UNAUTHORIZED",
        "Token not authorized for namespace",
    );
    // Re-created, the namespace starts again at global position 1.
    let again = rpc(&url, Some(&token), r#"["ns.create","tenant-a"]"#).json();
    let fresh = again["token"].as_str().unwrap();
    assert_ne!(fresh, a_token);
    assert_eq!(write(fresh, "y-1").json()["globalPosition"], 1);
    // A namespace may delete itself.
    assert_eq!(
        rpc(&url, Some(&b_token), r#"["ns.delete","tenant-b"]"#).status,
        200
    );
    expect_error(
        &write(&b_token, "x-3"),
        403,
        "AUTH_UNAUTHORIZED",
        "Token not authorized for namespace",
    );
    still_serving(&server, &token);
}

#[test]
fn test_mode_relaxes_authentication() {
    let server = Server::start(ServerConfig::new().test_mode(true)).unwrap();
    let url = server.url();
    let token = server.default_token().unwrap().expose_secret().to_string();
    let write = |t: Option<&str>, stream: &str| {
        rpc(
            &url,
            t,
            &json!(["stream.write", stream, {"type": "T", "data": {}}]).to_string(),
        )
    };
    assert_eq!(
        write(None, "tm-1").status,
        200,
        "no token: namespace default"
    );
    assert_eq!(
        write(Some("garbage"), "tm-1").status,
        200,
        "unparsable token: default"
    );
    let wrong_secret = format!("ns_ZGVmYXVsdA_{}", "0".repeat(64));
    assert_eq!(
        write(Some(&wrong_secret), "tm-1").status,
        200,
        "a wrong secret passes"
    );
    let seen = rpc(&url, Some(&token), r#"["stream.version","tm-1"]"#);
    assert_eq!(seen.body, "2\n", "all three landed in default");
    let unknown = format!("ns_dGVuYW50LWE_{}", "0".repeat(64));
    expect_error(
        &write(Some(&unknown), "tm-1"),
        500,
        "BACKEND_ERROR",
        "Failed to write message: namespace not found",
    );
    for (body, prefix) in [
        (r#"["stream.get","tm-1"]"#, "Failed to get messages"),
        (r#"["stream.last","tm-1"]"#, "Failed to get last message"),
        (
            r#"["stream.version","tm-1"]"#,
            "Failed to get stream version",
        ),
        (
            r#"["category.get","tm"]"#,
            "Failed to get category messages",
        ),
        (r#"["ns.streams"]"#, "Failed to list streams"),
        (r#"["ns.categories"]"#, "Failed to list categories"),
    ] {
        expect_error(
            &rpc(&url, Some(&unknown), body),
            500,
            "BACKEND_ERROR",
            &format!("{prefix}: namespace not found"),
        );
    }
    // Arguments are checked first; namespace-free methods work.
    expect_error(
        &rpc(&url, Some(&unknown), r#"["stream.get",""]"#),
        400,
        "INVALID_REQUEST",
        "streamName must be a non-empty string",
    );
    assert_eq!(rpc(&url, Some(&unknown), r#"["sys.version"]"#).status, 200);
    // Admin calls work without a token in test mode.
    assert_eq!(rpc(&url, None, r#"["ns.create","t2"]"#).status, 200);
    assert_eq!(
        write(Some(&unknown), "tm-1").status,
        500,
        "not auto-created"
    );
}

#[test]
fn refuses_a_token_for_another_namespace() {
    let err =
        Server::start(ServerConfig::new().token(format!("ns_dGVuYW50LWE_{}", "0".repeat(64))))
            .unwrap_err();
    assert!(err.to_string().contains("default"), "{err}");
    assert!(Server::start(ServerConfig::new().token("nope")).is_err());
}
