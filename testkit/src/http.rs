//! HTTP for tests: reqwest's blocking client, and one hand-written client
//! for what a client library would not send.

use std::time::Duration;

use crate::poll_until;

/// A TCP port free right now on 127.0.0.1 (for a process's `http.listen`).
pub fn free_addr() -> String {
    let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind an ephemeral port");
    l.local_addr().expect("local addr").to_string()
}

/// `GET path` on `addr` → (status, body); `None` while nothing listens.
pub fn http_get(addr: &str, path: &str) -> Option<(u16, String)> {
    http_call(addr, "GET", path, &[], None)
}

/// `method path` on `addr` with `headers` and a JSON body → (status, body);
/// `None` while nothing listens.
pub fn http_call(
    addr: &str,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: Option<&[u8]>,
) -> Option<(u16, String)> {
    http_exchange(addr, method, path, headers, body).map(|(status, _, body)| (status, body))
}

/// A response's header fields: (lowercase name, value).
pub type Fields = Vec<(String, String)>;

/// As [`http_call`], with the response's header fields too: reqwest's
/// blocking client (one for the process, 20 s per request), on a thread of
/// its own, so async tests may call it too.
pub fn http_exchange(
    addr: &str,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: Option<&[u8]>,
) -> Option<(u16, Fields, String)> {
    std::thread::scope(|s| {
        s.spawn(|| blocking_exchange(addr, method, path, headers, body))
            .join()
            .unwrap_or_else(|_| panic!("{method} {path}: the HTTP client thread panicked"))
    })
}

fn blocking_exchange(
    addr: &str,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: Option<&[u8]>,
) -> Option<(u16, Fields, String)> {
    static CLIENT: std::sync::OnceLock<reqwest::blocking::Client> = std::sync::OnceLock::new();
    let client = CLIENT.get_or_init(|| {
        // reqwest is built without a TLS provider of its own (as lapin, ring).
        let _ = rustls::crypto::ring::default_provider().install_default();
        reqwest::blocking::Client::builder()
            .timeout(Duration::from_secs(20))
            .build()
            .unwrap_or_else(|e| panic!("an HTTP client: {e}"))
    });
    let method = reqwest::Method::from_bytes(method.as_bytes())
        .unwrap_or_else(|e| panic!("method {method}: {e}"));
    let mut req = client.request(method, format!("http://{addr}{path}"));
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    if let Some(b) = body {
        req = req
            .header("content-type", "application/json")
            .body(b.to_vec());
    }
    let res = req.send().ok()?;
    let status = res.status().as_u16();
    let fields = res
        .headers()
        .iter()
        .map(|(k, v)| {
            (
                k.as_str().to_ascii_lowercase(),
                v.to_str().unwrap_or("").to_string(),
            )
        })
        .collect();
    let text = res.text().ok()?;
    Some((status, fields, text))
}

/// One request written by hand on a fresh connection, for what a client
/// library would not send (a forged `Host`, a body the server refuses
/// before reading it all): (status, fields, body); `None` while nothing
/// listens.
pub fn raw_http(
    addr: &str,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: Option<&[u8]>,
) -> Option<(u16, Fields, String)> {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(addr).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(20))).ok()?;
    let mut head = format!("{method} {path} HTTP/1.1\r\nConnection: close\r\n");
    if !headers.iter().any(|(k, _)| k.eq_ignore_ascii_case("host")) {
        head.push_str(&format!("Host: {addr}\r\n"));
    }
    for (k, v) in headers {
        head.push_str(&format!("{k}: {v}\r\n"));
    }
    if let Some(b) = body {
        head.push_str(&format!(
            "Content-Type: application/json\r\nContent-Length: {}\r\n",
            b.len()
        ));
    }
    head.push_str("\r\n");
    s.write_all(head.as_bytes()).ok()?;
    if let Some(b) = body {
        // The server may answer (413) before reading it all.
        let _ = s.write_all(b);
    }
    let mut text = String::new();
    s.read_to_string(&mut text).ok()?;
    let (head, body) = text.split_once("\r\n\r\n")?;
    let status = head.split_whitespace().nth(1)?.parse().ok()?;
    let fields = head
        .lines()
        .skip(1)
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_string()))
        .collect();
    Some((status, fields, body.to_string()))
}

/// Polls `GET path` until its status is `want` (bounded by `within`).
pub fn wait_status(addr: &str, path: &str, want: u16, within: Duration) -> String {
    let last = std::cell::RefCell::new(None);
    poll_until(
        within,
        &format!("GET {addr}{path} answering {want}"),
        || {
            let got = http_get(addr, path);
            let hit = got
                .as_ref()
                .filter(|(status, _)| *status == want)
                .map(|(_, body)| body.clone());
            *last.borrow_mut() = got;
            hit
        },
        || format!("{:?}", last.borrow()),
    )
}
