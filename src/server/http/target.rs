//! A request's target: the path as EventoDB's server routes it, and query
//! components decoded.

/// A query component decoded (`+` is a space, then percent-decoding).
pub(super) fn decode_component(s: &str) -> String {
    let spaced = s.replace('+', " ");
    percent_encoding::percent_decode_str(&spaced)
        .decode_utf8_lossy()
        .into_owned()
}

/// The path a request target names, as fasthttp (EventoDB's server) gives
/// it to the router: without scheme and host (absolute form), percent-
/// decoded, with `//` collapsed and `.` and `..` segments resolved. A
/// trailing slash stays (`/rpc/` is not `/rpc`).
pub(super) fn normalize_path(target: &str) -> String {
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

#[cfg(test)]
mod tests {
    use super::*;

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
}
