//! HTTPS and WSS through a real server with the test certificate in `tests/fixtures/tls`
//! (self-signed for localhost and 127.0.0.1, valid until 2126): the API over TLS with HSTS,
//! a Secure session cookie, the live socket over WSS, syslog over TLS (RFC 5425), and settings
//! that cannot work refused at start with the file named.
#![allow(clippy::unwrap_used)] // Tests fail loudly on purpose.
#![cfg(feature = "ssr")]

mod common;

use common::{TestServer, TOKEN};
use futures::StreamExt;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName};
use std::path::PathBuf;
use std::sync::Arc;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_rustls::client::TlsStream;
use tokio_rustls::TlsConnector;

fn fixture(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/tls")
        .join(name)
}

async fn tls_server() -> TestServer {
    TestServer::start_with(|c| {
        c.tls_cert = Some(fixture("cert.pem"));
        c.tls_key = Some(fixture("key.pem"));
    })
    .await
}

/// A TLS connection to the server that trusts only the test certificate.
async fn connect(s: &TestServer) -> TlsStream<TcpStream> {
    connect_to(s.addr).await
}

/// A TLS connection to `addr` that trusts only the test certificate.
async fn connect_to(addr: std::net::SocketAddr) -> TlsStream<TcpStream> {
    let mut roots = rustls::RootCertStore::empty();
    for cert in CertificateDer::pem_file_iter(fixture("cert.pem")).unwrap() {
        roots.add(cert.unwrap()).unwrap();
    }
    let config = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_root_certificates(roots)
    .with_no_client_auth();
    let tcp = TcpStream::connect(addr).await.unwrap();
    TlsConnector::from(Arc::new(config))
        .connect(ServerName::try_from("localhost").unwrap(), tcp)
        .await
        .unwrap()
}

/// Sends one HTTP/1.1 request over TLS; returns the status, the headers (lowercased names)
/// and the body.
async fn request(s: &TestServer, head: &str, body: &str) -> (u16, Vec<(String, String)>, String) {
    let mut tls = connect(s).await;
    let text = format!(
        "{head}\r\nHost: localhost\r\nConnection: close\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    );
    tls.write_all(text.as_bytes()).await.unwrap();
    let mut raw = Vec::new();
    // The server closes after answering; a TLS close without close_notify is fine here.
    let _ = tls.read_to_end(&mut raw).await;
    let raw = String::from_utf8_lossy(&raw).into_owned();
    let (head, body) = raw.split_once("\r\n\r\n").unwrap();
    let mut lines = head.lines();
    let status = lines
        .next()
        .unwrap()
        .split(' ')
        .nth(1)
        .unwrap()
        .parse()
        .unwrap();
    let headers = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_string()))
        .collect();
    (status, headers, body.to_string())
}

fn header<'a>(headers: &'a [(String, String)], name: &str) -> Option<&'a str> {
    headers
        .iter()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.as_str())
}

#[tokio::test]
async fn the_api_speaks_https_with_hsts_and_sessions_are_secure() {
    let s = tls_server().await;
    let (status, headers, body) = request(&s, "GET /api/health HTTP/1.1", "").await;
    assert_eq!(status, 200, "{body}");
    assert!(body.contains("healthy"), "{body}");
    assert_eq!(
        header(&headers, "strict-transport-security"),
        Some("max-age=31536000; includeSubDomains")
    );

    let form = format!("token={TOKEN}");
    let (_, headers, body) = request(
        &s,
        "POST /api/fn/login HTTP/1.1\r\nContent-Type: application/x-www-form-urlencoded\r\nAccept: application/json",
        &form,
    )
    .await;
    let cookie = header(&headers, "set-cookie").unwrap_or_else(|| panic!("no cookie: {body}"));
    assert!(
        cookie.contains("; Secure") && cookie.contains("HttpOnly"),
        "{cookie}"
    );

    // Plain HTTP to the TLS port gets no answer it could mistake for one.
    let mut plain = TcpStream::connect(s.addr).await.unwrap();
    plain
        .write_all(b"GET /api/health HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .unwrap();
    let mut answer = Vec::new();
    let _ = plain.read_to_end(&mut answer).await;
    assert!(!String::from_utf8_lossy(&answer).contains("healthy"));
}

#[tokio::test]
async fn the_live_socket_works_over_wss() {
    let s = tls_server().await;
    let tls = connect(&s).await;
    let url = format!(
        "wss://localhost:{}/ws/audit?token={TOKEN}&sinceSeq=0",
        s.addr.port()
    );
    let (mut ws, _) = tokio_tungstenite::client_async(url, tls).await.unwrap();
    let first = tokio::time::timeout(std::time::Duration::from_secs(10), ws.next())
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    let msg: serde_json::Value = serde_json::from_str(first.to_text().unwrap()).unwrap();
    assert_eq!(msg["type"], "ready", "{msg}");
}

/// The next event message of a live socket.
async fn next_event<S>(ws: &mut S) -> serde_json::Value
where
    S: futures::Stream<
            Item = Result<
                tokio_tungstenite::tungstenite::Message,
                tokio_tungstenite::tungstenite::Error,
            >,
        > + Unpin,
{
    loop {
        let m = tokio::time::timeout(std::time::Duration::from_secs(10), ws.next())
            .await
            .unwrap()
            .unwrap()
            .unwrap();
        let v: serde_json::Value = serde_json::from_str(m.to_text().unwrap()).unwrap();
        if v["type"] == "event" {
            return v["event"].clone();
        }
    }
}

#[tokio::test]
async fn syslog_over_tls_lands_octet_counted_messages() {
    let s = TestServer::start_with(|c| {
        c.tls_cert = Some(fixture("cert.pem"));
        c.tls_key = Some(fixture("key.pem"));
        c.syslog = vec!["tls://127.0.0.1:0".into()];
    })
    .await;
    let (source, syslog) = s.syslog[0].clone();
    assert!(source.starts_with("syslog:tls://"), "{source}");
    let tls = connect(&s).await;
    let url = format!(
        "wss://localhost:{}/ws/audit?token={TOKEN}&sinceSeq=0",
        s.addr.port()
    );
    let (mut ws, _) = tokio_tungstenite::client_async(url, tls).await.unwrap();
    // RFC 5425 frames: octet counting, two messages in one write.
    let mut stream = connect_to(syslog).await;
    let a = "<38>1 2026-12-07T10:00:00Z bastion sudo 77 sudo.exec - alice ran /bin/sh";
    let b = "<84>1 2026-12-07T10:00:01Z bastion sshd 78 - - session opened";
    let frames = format!("{} {a}{} {b}", a.len(), b.len());
    stream.write_all(frames.as_bytes()).await.unwrap();
    stream.flush().await.unwrap();
    let first = next_event(&mut ws).await;
    let second = next_event(&mut ws).await;
    assert_eq!(first["source"], source.as_str());
    assert_eq!(first["action"], "sudo.exec");
    assert_eq!(first["description"], "alice ran /bin/sh");
    assert_eq!(second["action"], "syslog.sshd");
    assert_eq!(second["category"], "authentication");
}

#[tokio::test]
async fn tls_settings_that_cannot_work_are_refused_at_start() {
    let dir = tempfile::tempdir().unwrap();
    let mut config = common::serve_config(dir.path());
    config.tls_cert = Some(fixture("cert.pem"));
    let err = trailwatch::site::Server::bind(&config)
        .await
        .err()
        .unwrap()
        .to_string();
    assert!(err.contains("--tls-key"), "{err}");

    config.tls_key = Some(fixture("cert.pem"));
    let err = trailwatch::site::Server::bind(&config)
        .await
        .err()
        .unwrap()
        .to_string();
    assert!(err.contains("cert.pem"), "the file is named: {err}");

    config.tls_key = Some(dir.path().join("missing.pem"));
    let err = trailwatch::site::Server::bind(&config)
        .await
        .err()
        .unwrap()
        .to_string();
    assert!(err.contains("missing.pem"), "{err}");
}
