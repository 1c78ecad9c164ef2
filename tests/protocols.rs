//! The ecosystem's senders against a real server: OpenTelemetry's Python SDK exporting logs
//! over OTLP/HTTP, and OTLP requests encoded by `opentelemetry-proto` in both encodings. The
//! Python packages live in `.ci/tools/venv` (`.ci/setup test` installs them).
#![allow(clippy::unwrap_used)]

mod common;

use common::{batch, fixture_script, python, run_with_input, TestServer, TOKEN};
use opentelemetry_proto::tonic::collector::logs::v1::{
    ExportLogsServiceRequest, ExportLogsServiceResponse,
};
use opentelemetry_proto::tonic::common::v1::{any_value, AnyValue, KeyValue};
use opentelemetry_proto::tonic::logs::v1::{LogRecord, ResourceLogs, ScopeLogs};
use prost::Message;
use serde_json::{json, Value};
use std::io::Write;
use std::path::PathBuf;
use std::process::{Command, Stdio};

/// Runs `tests/fixtures/otel_send.py` with `plan`; returns its exit status and output.
async fn otel_send(plan: Value) -> (bool, String) {
    run_with_input(python(), fixture_script("otel_send.py"), plan.to_string()).await
}

/// Reads `n` events from the socket, as JSON.
async fn live_events(socket: &mut common::Socket, n: usize) -> Vec<Value> {
    let mut events = Vec::new();
    while events.len() < n {
        let m = socket.next_json().await;
        if m["type"] == "event" {
            events.push(m["event"].clone());
        }
    }
    events
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_python_sdk_lands_events_with_the_mapped_fields_live_and_in_the_explorer() {
    let server = TestServer::start().await;
    let mut socket = server.socket("").await;
    socket.events_until_ready().await;
    let when_ns: u64 = 1_767_225_600_123_000_000; // 2026-01-01T00:00:00.123Z
    let plan = json!({
        "endpoint": server.url("/v1/logs"),
        "token": TOKEN,
        "resource": {
            "service.name": "billing",
            "service.version": "2.4.1",
            "host.name": "app-7",
            "deployment.environment.name": "production",
        },
        "records": [{
            "event_name": "auth.login",
            "severity": "WARN",
            "body": "password refused for alice",
            "timestamp_ns": when_ns,
            "trace_id": "4bf92f3577b34da6a3ce929d0e0e4736",
            "span_id": "00f067aa0ba902b7",
            "attributes": {
                "user.id": "u-42",
                "user.name": "alice",
                "client.address": "203.0.113.9",
                "user_agent.original": "Mozilla/5.0",
                "http.request.method": "POST",
                "url.path": "/login",
                "http.response.status_code": 401,
                "tenant": "acme",
                "attempt": 3,
            },
        }, {
            "event_name": "invoice.update",
            "severity": "INFO",
            "body": "invoice 17 paid",
            "attributes": {"enduser.id": "u-7", "audit.outcome": "success",
                           "audit.entity.type": "invoice", "audit.entity.id": "17"},
        }],
        "logging": [{"level": "ERROR", "message": "payment provider unreachable"}],
    });
    let (ok, out) = otel_send(plan).await;
    assert!(ok, "the SDK's exports failed: {out}");

    let events = live_events(&mut socket, 3).await;
    let login = &events[0];
    assert_eq!(login["source"], "otlp");
    assert_eq!(login["action"], "auth.login");
    assert_eq!(login["level"], "warning");
    assert_eq!(login["outcome"], "denied");
    assert_eq!(login["category"], "authentication");
    assert_eq!(login["timestamp"], "2026-01-01T00:00:00.123Z");
    assert_eq!(login["description"], "password refused for alice");
    assert_eq!(login["user"], json!({"id": "u-42", "username": "alice"}));
    assert_eq!(
        login["request"],
        json!({"method": "POST", "path": "/login", "ip": "203.0.113.9",
               "userAgent": "Mozilla/5.0", "statusCode": 401})
    );
    assert_eq!(login["correlationId"], "4bf92f3577b34da6a3ce929d0e0e4736");
    assert_eq!(
        login["system"],
        json!({"service": "billing", "server": "app-7", "environment": "production",
               "version": "2.4.1"})
    );
    let meta = &login["metadata"];
    assert_eq!(meta["tenant"], "acme");
    assert_eq!(meta["attempt"], 3);
    assert_eq!(meta["otel.span_id"], "00f067aa0ba902b7");
    assert_eq!(meta["otel.scope.name"], "billing.audit");
    assert_eq!(meta["otel.resource"]["telemetry.sdk.language"], "python");
    assert!(
        login["submittedBy"].as_str().unwrap().contains("admin"),
        "{login}"
    );

    let update = &events[1];
    assert_eq!(update["action"], "invoice.update");
    assert_eq!(update["user"]["id"], "u-7");
    assert_eq!(update["entity"], json!({"type": "invoice", "id": "17"}));
    // Python's own logging, through the SDK's handler: a plain record, kept whole.
    let logged = &events[2];
    assert_eq!(logged["action"], "log.record");
    assert_eq!(logged["level"], "error");
    assert_eq!(logged["description"], "payment provider unreachable");
    assert_eq!(logged["metadata"]["otel.scope.name"], "billing.legacy");

    // The explorer (its server function) finds them by source, and so does the REST list.
    let cookie = server.admin_session().await;
    let (status, page) = server
        .call_fn(
            "/api/fn/events",
            &cookie,
            &json!({"filter": {"source": "otlp"}, "cursor": null}),
        )
        .await;
    assert_eq!(status, 200, "{page}");
    let actions: Vec<&str> = page["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["action"].as_str().unwrap())
        .collect();
    assert_eq!(actions.len(), 3, "{page}");
    for action in ["auth.login", "invoice.update", "log.record"] {
        assert!(actions.contains(&action), "{actions:?}");
    }
    let (status, list) = server.get("/api/v1/events?q=source:otlp%20user:u-42").await;
    assert_eq!(status, 200, "{list}");
    assert_eq!(list["items"][0]["action"], "auth.login", "{list}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_python_exporter_is_refused_without_an_ingest_credential() {
    let server = TestServer::start().await;
    let (status, body) = common::call(
        &server,
        "POST",
        "/api/v1/tokens",
        &common::Cred::Bearer(TOKEN.into()),
        Some(json!({"name": "reader", "scope": "read"})),
    )
    .await;
    assert_eq!(status, 201, "{body}");
    let reader = body["token"].as_str().unwrap().to_string();
    for token in [reader.as_str(), "not-a-token"] {
        let plan = json!({
            "endpoint": server.url("/otlp/v1/logs"),
            "token": token,
            "records": [{"event_name": "auth.login", "body": "x"}],
        });
        let (ok, out) = otel_send(plan).await;
        assert!(!ok, "a {token} credential exported: {out}");
        assert!(out.contains("FAILURE"), "{out}");
    }
    let (_, list) = server.get("/api/v1/events?q=source:otlp").await;
    assert_eq!(list["items"], json!([]), "nothing was stored: {list}");
}

fn kv(key: &str, value: any_value::Value) -> KeyValue {
    KeyValue {
        key: key.into(),
        value: Some(AnyValue { value: Some(value) }),
        ..Default::default()
    }
}

fn record(name: &str, attributes: Vec<KeyValue>) -> LogRecord {
    LogRecord {
        event_name: name.into(),
        severity_number: 9,
        attributes,
        ..Default::default()
    }
}

fn export(records: Vec<LogRecord>) -> ExportLogsServiceRequest {
    ExportLogsServiceRequest {
        resource_logs: vec![ResourceLogs {
            scope_logs: vec![ScopeLogs {
                log_records: records,
                ..Default::default()
            }],
            ..Default::default()
        }],
    }
}

/// Posts `body` to `/v1/logs` as `content_type`, gzipped when asked.
async fn post_otlp(
    server: &TestServer,
    content_type: &str,
    body: Vec<u8>,
    gzip: bool,
) -> reqwest::Response {
    let mut request = server
        .http
        .post(server.url("/v1/logs"))
        .bearer_auth(TOKEN)
        .header("Content-Type", content_type);
    let body = match gzip {
        false => body,
        true => {
            request = request.header("Content-Encoding", "gzip");
            let mut z = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
            z.write_all(&body).unwrap();
            z.finish().unwrap()
        }
    };
    request.body(body).send().await.unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refused_records_come_back_as_partial_success_and_the_rest_are_stored() {
    let server = TestServer::start().await;
    let far = LogRecord {
        time_unix_nano: 4_102_444_800_000_000_000, // 2100
        ..record("future.thing", vec![])
    };
    let request = export(vec![
        record(
            "good.one",
            vec![kv("user.id", any_value::Value::StringValue("a".into()))],
        ),
        far,
        record(
            "bad.status",
            vec![kv(
                "http.response.status_code",
                any_value::Value::IntValue(42),
            )],
        ),
        record("good.two", vec![]),
    ]);
    // Protobuf, gzipped, as exporters send by default.
    let r = post_otlp(
        &server,
        "application/x-protobuf",
        request.encode_to_vec(),
        true,
    )
    .await;
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["content-type"], "application/x-protobuf");
    let answer = ExportLogsServiceResponse::decode(r.bytes().await.unwrap()).unwrap();
    let partial = answer.partial_success.unwrap();
    assert_eq!(partial.rejected_log_records, 2);
    assert!(
        partial
            .error_message
            .contains("logRecords[1]: timeUnixNano:")
            && partial
                .error_message
                .contains("ahead of the server's clock"),
        "{}",
        partial.error_message
    );
    assert!(
        partial
            .error_message
            .contains("logRecords[2]: http.response.status_code:"),
        "{}",
        partial.error_message
    );
    // The same request in OTLP's JSON encoding gets the same answer, in JSON.
    let r = post_otlp(
        &server,
        "application/json",
        serde_json::to_vec(&request).unwrap(),
        false,
    )
    .await;
    assert_eq!(r.status(), 200);
    let answer: Value = r.json().await.unwrap();
    assert_eq!(
        answer["partialSuccess"]["rejectedLogRecords"], 2,
        "{answer}"
    );

    let (_, list) = server
        .get("/api/v1/events?q=source:otlp&sort=seq:asc")
        .await;
    let actions: Vec<&str> = list["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["action"].as_str().unwrap())
        .collect();
    assert_eq!(actions, ["good.one", "good.two", "good.one", "good.two"]);

    // A fully taken request answers with no partial success at all.
    let r = post_otlp(
        &server,
        "application/json",
        serde_json::to_vec(&export(vec![record("good.three", vec![])])).unwrap(),
        true,
    )
    .await;
    assert_eq!(r.status(), 200);
    assert_eq!(r.json::<Value>().await.unwrap(), json!({}));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unreadable_export_is_refused_with_a_status_that_says_why() {
    let server = TestServer::start().await;
    // OTLP JSON as the specification's example writes it, by hand, with a name repeated.
    let dup = br#"{"resourceLogs":[{"scopeLogs":[{"logRecords":[
        {"eventName":"a","eventName":"b","timeUnixNano":"1767225600000000000"}]}]}]}"#;
    let r = post_otlp(&server, "application/json", dup.to_vec(), false).await;
    assert_eq!(r.status(), 400);
    let status: Value = r.json().await.unwrap();
    assert!(
        status["message"].as_str().unwrap().contains("eventName"),
        "{status}"
    );
    let r = post_otlp(&server, "application/x-protobuf", vec![0xff, 0xff], false).await;
    assert_eq!(r.status(), 400);
    let r = post_otlp(
        &server,
        "application/x-protobuf",
        b"not gzip".to_vec(),
        false,
    )
    .await;
    assert_eq!(r.status(), 400);
    let r = server
        .http
        .post(server.url("/v1/logs"))
        .bearer_auth(TOKEN)
        .header("Content-Type", "application/x-protobuf")
        .header("Content-Encoding", "gzip")
        .body(b"not gzip".to_vec())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    let r = post_otlp(&server, "text/plain", b"{}".to_vec(), false).await;
    assert_eq!(r.status(), 415);
    // A gzip bomb: a few kilobytes that inflate past the body limit.
    let huge = vec![b' '; 64 * 1024 * 1024];
    let r = post_otlp(&server, "application/json", huge, true).await;
    assert_eq!(r.status(), 413);
    // And a spec-shaped JSON body, with string-encoded 64-bit numbers, is read.
    let good = br#"{"resourceLogs":[{"resource":{"attributes":[
        {"key":"service.name","value":{"stringValue":"shop"}}]},
        "scopeLogs":[{"logRecords":[{"timeUnixNano":"1767225600000000000",
        "severityNumber":17,"body":{"stringValue":"card declined"},
        "traceId":"5b8efff798038103d269b633813fc60c","spanId":"eee19b7ec3c1b174",
        "attributes":[{"key":"event.name","value":{"stringValue":"payment.charge"}},
        {"key":"retries","value":{"intValue":"2"}}]}]}]}]}"#;
    let r = post_otlp(&server, "application/json", good.to_vec(), false).await;
    assert_eq!(r.status(), 200);
    let (_, list) = server.get("/api/v1/events?q=source:otlp").await;
    let e = &list["items"][0];
    assert_eq!(e["action"], "payment.charge", "{list}");
    assert_eq!(e["level"], "error");
    assert_eq!(e["timestamp"], "2026-01-01T00:00:00Z");
    assert_eq!(e["system"]["service"], "shop");
    assert_eq!(e["metadata"]["retries"], 2);
    assert_eq!(e["correlationId"], "5b8efff798038103d269b633813fc60c");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn otlp_exports_share_the_senders_ingest_rate_limit() {
    let server = TestServer::start_with(|c| {
        c.limits = trailwatch::server::limits::LimitsConfig {
            ingest_per_second: 0.5,
            ingest_burst: 2,
            ..Default::default()
        };
    })
    .await;
    assert_eq!(server.post(&json!({"action": "over.http"})).await.0, 201);
    let body = export(vec![record("over.otlp", vec![])]).encode_to_vec();
    let taken = post_otlp(&server, "application/x-protobuf", body.clone(), false).await;
    assert_eq!(taken.status(), 200);
    // The third request of the burst, whichever door it comes through, waits: OTLP
    // exporters retry a 429 after its Retry-After.
    let refused = post_otlp(&server, "application/x-protobuf", body, false).await;
    assert_eq!(refused.status(), 429);
    assert!(refused.headers().contains_key("retry-after"));
    let (_, list) = server.get("/api/v1/events?action=over.otlp").await;
    assert_eq!(list["total"], 1, "{list}");
}

/// The webhook's sample batch (`tests/fixtures/k8s-audit-eventlist.json`, in the documented
/// `audit.k8s.io/v1` shape), repeated to `n` items with unique audit ids.
fn kubernetes_batch(n: usize) -> Value {
    let text = std::fs::read_to_string(
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/k8s-audit-eventlist.json"),
    )
    .unwrap();
    let mut list: Value = serde_json::from_str(&text).unwrap();
    let samples = list["items"].as_array().unwrap().clone();
    let items: Vec<Value> = (0..n)
        .map(|i| {
            let mut item = samples[i % samples.len()].clone();
            item["auditID"] = json!(format!("audit-{i:04}"));
            item
        })
        .collect();
    list["items"] = json!(items);
    list
}

/// A token with only the `ingest` scope, as the API server's webhook kubeconfig would hold.
async fn ingest_token(server: &TestServer, name: &str) -> String {
    let (status, body) = common::call(
        server,
        "POST",
        "/api/v1/tokens",
        &common::Cred::Bearer(TOKEN.into()),
        Some(json!({"name": name, "scope": "ingest"})),
    )
    .await;
    assert_eq!(status, 201, "{body}");
    body["token"].as_str().unwrap().to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_kubernetes_webhook_batch_of_400_lands_whole_with_the_mapped_fields() {
    let server = TestServer::start().await;
    let token = ingest_token(&server, "kube-apiserver").await;
    let mut socket = server.socket("").await;
    socket.events_until_ready().await;
    let r = server
        .http
        .post(server.url("/api/v1/kubernetes/audit"))
        .bearer_auth(&token)
        .json(&kubernetes_batch(400))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    let receipt: Value = r.json().await.unwrap();
    assert_eq!(receipt["accepted"], 400, "{receipt}");
    let live = live_events(&mut socket, 400).await;
    assert!(live.iter().all(|e| e["source"] == "kubernetes"));

    let (_, forbidden) = server.get("/api/v1/events?correlation_id=audit-0000").await;
    let e = &forbidden["items"][0];
    assert_eq!(e["action"], "k8s.secrets.get", "{forbidden}");
    assert_eq!(e["outcome"], "denied");
    assert_eq!(e["category"], "security");
    assert_eq!(e["user"]["id"], "system:serviceaccount:ci:deployer");
    assert_eq!(
        e["entity"],
        json!({"type": "secrets", "id": "payments/stripe-key", "name": "stripe-key"})
    );
    assert_eq!(e["request"]["ip"], "10.244.1.17");
    assert_eq!(e["request"]["statusCode"], 403);
    assert_eq!(e["timestamp"], "2026-11-30T09:15:02.417Z");
    assert_eq!(e["metadata"]["k8s.stage"], "ResponseComplete");
    assert_eq!(e["metadata"]["k8s.auditID"], "audit-0000");
    assert!(
        e["description"].as_str().unwrap().contains("Forbidden"),
        "{e}"
    );

    let (_, binding) = server.get("/api/v1/events?correlation_id=audit-0001").await;
    let e = &binding["items"][0];
    assert_eq!(e["action"], "k8s.rolebindings.create");
    assert_eq!(e["category"], "authorization");
    assert_eq!(
        e["entity"]["type"],
        "rolebindings.rbac.authorization.k8s.io"
    );
    assert_eq!(
        e["metadata"]["k8s.requestObject"]["subjects"][0]["name"],
        "mallory@example.com"
    );
    assert_eq!(
        e["metadata"]["k8s.impersonatedUser"]["username"],
        "system:admin"
    );

    let (_, exec) = server.get("/api/v1/events?correlation_id=audit-0002").await;
    assert_eq!(exec["items"][0]["action"], "k8s.pods.exec.create");
    assert_eq!(exec["items"][0]["category"], "security");
    let (_, probe) = server.get("/api/v1/events?correlation_id=audit-0003").await;
    assert_eq!(probe["items"][0]["action"], "k8s.get");
    assert_eq!(probe["items"][0]["request"]["path"], "/healthz");

    let (_, all) = server.get("/api/v1/events?q=source:kubernetes").await;
    assert_eq!(all["total"], 400, "every item is one event");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_kubernetes_item_that_cannot_be_read_is_kept_and_its_batch_lands() {
    let server = TestServer::start().await;
    let token = ingest_token(&server, "kube-apiserver").await;
    let mut batch = kubernetes_batch(2);
    let mut odd = batch["items"][0].clone();
    odd["auditID"] = json!("odd-1");
    odd["verb"] = json!(7);
    batch["items"].as_array_mut().unwrap().insert(1, odd);
    let post = |body: Value, token: Option<&str>| {
        let mut r = server
            .http
            .post(server.url("/api/v1/kubernetes/audit"))
            .json(&body);
        if let Some(t) = token {
            r = r.bearer_auth(t);
        }
        r.send()
    };
    let r = post(batch, Some(&token)).await.unwrap();
    assert_eq!(r.status(), 201);
    let (_, list) = server
        .get("/api/v1/events?q=source:kubernetes&sort=seq:asc")
        .await;
    let actions: Vec<&str> = list["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["action"].as_str().unwrap())
        .collect();
    assert_eq!(
        actions,
        ["k8s.secrets.get", "log.unparsed", "k8s.rolebindings.create"]
    );
    let odd = &list["items"][1];
    assert_eq!(odd["correlationId"], "odd-1");
    assert!(odd["metadata"]["raw"]
        .as_str()
        .unwrap()
        .contains("\"verb\":7"));
    assert!(odd["metadata"]["error"].as_str().unwrap().contains("verb"));

    // Not an EventList: refused whole, with the body named. No credential: 401.
    let r = post(
        json!({"kind": "PodList", "apiVersion": "v1", "items": [{}]}),
        Some(&token),
    )
    .await
    .unwrap();
    assert_eq!(r.status(), 400);
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["field"], "body", "{body}");
    let r = post(kubernetes_batch(1), None).await.unwrap();
    assert_eq!(r.status(), 401);
}

/// A server with a TCP and a UDP syslog listener on free ports.
async fn syslog_server() -> TestServer {
    TestServer::start_with(|c| {
        c.syslog = vec!["tcp://127.0.0.1:0".into(), "udp://127.0.0.1:0".into()];
    })
    .await
}

/// The listener of `transport`: its source name and address.
fn listener(server: &TestServer, transport: &str) -> (String, std::net::SocketAddr) {
    server
        .syslog
        .iter()
        .find(|(source, _)| source.starts_with(&format!("syslog:{transport}://")))
        .cloned()
        .unwrap()
}

/// Runs util-linux `logger` with `args` and the message; it must succeed.
async fn logger(args: Vec<String>) {
    let out = tokio::task::spawn_blocking(move || Command::new("logger").args(&args).output())
        .await
        .unwrap()
        .expect("util-linux logger runs");
    assert!(
        out.status.success(),
        "logger failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

fn logger_args(addr: std::net::SocketAddr, transport: &[&str], rest: &[&str]) -> Vec<String> {
    let mut args: Vec<String> = vec![
        "--server".into(),
        addr.ip().to_string(),
        "--port".into(),
        addr.port().to_string(),
    ];
    args.extend(transport.iter().map(|s| s.to_string()));
    args.extend(rest.iter().map(|s| s.to_string()));
    args
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn logger_over_tcp_with_octet_counting_lands_rfc5424_messages() {
    let server = syslog_server().await;
    let (source, addr) = listener(&server, "tcp");
    let mut socket = server.socket("").await;
    socket.events_until_ready().await;
    let tcp = ["--tcp", "--octet-count", "--rfc5424"];
    logger(logger_args(
        addr,
        &tcp,
        &[
            "--tag",
            "sshd",
            "--id=4123",
            "-p",
            "authpriv.notice",
            "--msgid",
            "user.login",
            "--sd-id",
            "auth@32473",
            "--sd-param",
            "user=\"alice\"",
            "--sd-param",
            "method=\"publickey\"",
            "Accepted publickey for alice from 203.0.113.5",
        ],
    ))
    .await;
    let e = &live_events(&mut socket, 1).await[0];
    assert_eq!(e["source"], source.as_str());
    assert_eq!(e["action"], "user.login");
    assert_eq!(e["level"], "info");
    assert_eq!(
        e["category"], "authentication",
        "authpriv is authentication"
    );
    assert_eq!(e["user"]["id"], "alice");
    assert_eq!(
        e["description"],
        "Accepted publickey for alice from 203.0.113.5"
    );
    assert_eq!(e["system"]["service"], "sshd");
    assert!(
        e["system"]["server"].is_string(),
        "logger sends its host name: {e}"
    );
    assert_eq!(e["metadata"]["auth@32473"]["method"], "publickey");
    assert_eq!(e["metadata"]["syslog.procid"], "4123");
    assert_eq!(e["metadata"]["syslog.protocol"], "rfc5424");
    assert!(e["submittedBy"]
        .as_str()
        .unwrap()
        .starts_with("syslog:127.0.0.1"));

    // Several lines in one connection, newline-framed this time (no --octet-count), and a
    // line that is no syslog message at all: kept, not dropped.
    let lines = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(lines.path(), "first line\nsecond line\n").unwrap();
    let path = lines.path().display().to_string();
    logger(logger_args(
        addr,
        &["--tcp", "--rfc5424"],
        &["--tag", "batch", "-p", "user.warning", "-f", &path],
    ))
    .await;
    let two = live_events(&mut socket, 2).await;
    assert_eq!(
        two.iter()
            .map(|e| e["description"].clone())
            .collect::<Vec<_>>(),
        ["first line", "second line"]
    );
    assert!(two
        .iter()
        .all(|e| e["level"] == "warning" && e["action"] == "syslog.batch"));
    {
        use tokio::io::AsyncWriteExt;
        let mut raw = tokio::net::TcpStream::connect(addr).await.unwrap();
        raw.write_all(b"this is not syslog\n").await.unwrap();
        raw.shutdown().await.unwrap();
    }
    let odd = &live_events(&mut socket, 1).await[0];
    assert_eq!(odd["action"], "log.unparsed");
    assert_eq!(odd["metadata"]["raw"], "this is not syslog");
    assert_eq!(odd["source"], source.as_str());

    // The health page's statistics count the listener as a source of its own.
    let (status, stats) = server.get("/api/v1/events/statistics?range=24h").await;
    assert_eq!(status, 200, "{stats}");
    let by_source = stats["bySource"].as_array().unwrap();
    let row = by_source.iter().find(|v| v["value"] == source.as_str());
    assert_eq!(row.map(|v| v["count"].clone()), Some(json!(4)), "{stats}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn logger_over_udp_lands_rfc5424_and_rfc3164_messages() {
    let server = syslog_server().await;
    let (source, addr) = listener(&server, "udp");
    let mut socket = server.socket("").await;
    socket.events_until_ready().await;
    logger(logger_args(
        addr,
        &["--udp", "--rfc5424"],
        &[
            "--tag",
            "billing",
            "-p",
            "local0.err",
            "--msgid",
            "invoice.void",
            "invoice 17 voided",
        ],
    ))
    .await;
    let e = &live_events(&mut socket, 1).await[0];
    assert_eq!(e["source"], source.as_str());
    assert_eq!(e["action"], "invoice.void");
    assert_eq!(e["level"], "error");
    assert_eq!(e["description"], "invoice 17 voided");
    assert_eq!(e["metadata"]["syslog.facility"], "local0");
    logger(logger_args(
        addr,
        &["--udp", "--rfc3164"],
        &["--tag", "cron", "-p", "cron.crit", "backup job failed"],
    ))
    .await;
    let e = &live_events(&mut socket, 1).await[0];
    assert_eq!(e["action"], "syslog.cron");
    assert_eq!(e["level"], "critical");
    assert_eq!(e["description"], "backup job failed");
    assert_eq!(e["metadata"]["syslog.protocol"], "rfc3164");
}

/// Debian's rsyslogd, in the foreground with its own configuration, killed when dropped.
struct Rsyslogd(std::process::Child);

impl Drop for Rsyslogd {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rsyslog_forwards_a_file_with_omfwd() {
    let server = syslog_server().await;
    let (source, addr) = listener(&server, "tcp");
    let mut socket = server.socket("").await;
    socket.events_until_ready().await;
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("payments.log");
    std::fs::write(&log, "refund 991 approved by carol\n").unwrap();
    // The documented configuration of the README ("From syslog"), around an imfile input.
    let conf = format!(
        r#"global(workDirectory="{dir}")
module(load="imfile")
input(type="imfile" file="{log}" tag="payments" facility="local3" severity="warning")
action(type="omfwd" target="{ip}" port="{port}" protocol="tcp"
       tcp_framing="octet-counted" template="RSYSLOG_SyslogProtocol23Format")
"#,
        dir = dir.path().display(),
        log = log.display(),
        ip = addr.ip(),
        port = addr.port(),
    );
    let conf_path = dir.path().join("rsyslog.conf");
    std::fs::write(&conf_path, conf).unwrap();
    let rsyslogd = ["/usr/sbin/rsyslogd", "/sbin/rsyslogd"]
        .into_iter()
        .find(|p| std::path::Path::new(p).exists())
        .expect("rsyslogd is installed (.ci/setup test installs Debian's rsyslog)");
    let child = Command::new(rsyslogd)
        .arg("-n")
        .arg("-f")
        .arg(&conf_path)
        .arg("-i")
        .arg(dir.path().join("rsyslogd.pid"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let _rsyslogd = Rsyslogd(child);
    let first = &live_events(&mut socket, 1).await[0];
    // A line appended while rsyslog follows the file arrives too.
    {
        let mut f = std::fs::OpenOptions::new().append(true).open(&log).unwrap();
        writeln!(f, "refund 992 refused: over the limit").unwrap();
    }
    let second = &live_events(&mut socket, 1).await[0];
    for (e, text) in [
        (first, "refund 991 approved by carol"),
        (second, "refund 992 refused: over the limit"),
    ] {
        assert_eq!(e["source"], source.as_str());
        assert_eq!(e["description"], text);
        assert_eq!(e["action"], "syslog.payments");
        assert_eq!(e["level"], "warning");
        assert_eq!(e["metadata"]["syslog.facility"], "local3");
        assert_eq!(e["metadata"]["syslog.protocol"], "rfc5424");
    }
}

#[tokio::test]
async fn syslog_listeners_that_cannot_work_are_refused_at_start() {
    for (spec, says) in [
        ("tls://127.0.0.1:0", "--tls-cert"),
        ("tcp:127.0.0.1:514", "tcp://ADDR:PORT"),
        ("sctp://127.0.0.1:514", "not one of tcp, udp, tls"),
        ("udp://syslog.example:514", "not an IP address"),
    ] {
        let dir = tempfile::tempdir().unwrap();
        let mut config = common::serve_config(dir.path());
        config.syslog = vec![spec.into()];
        let err = match trailwatch::site::Server::bind(&config).await {
            Ok(_) => panic!("{spec} was accepted"),
            Err(e) => e.to_string(),
        };
        assert!(err.contains(says), "{spec}: {err}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_configured_time_window_holds_for_every_source() {
    let outside = tempfile::tempdir().unwrap();
    let tailed = outside.path().join("app.log");
    std::fs::write(&tailed, "").unwrap();
    let server = TestServer::start_with(|c| {
        c.window = trailwatch::ingest::TimeWindow {
            not_before: chrono::DateTime::parse_from_rfc3339("2020-01-01T00:00:00Z")
                .unwrap()
                .with_timezone(&chrono::Utc),
            max_ahead: chrono::Duration::hours(1),
        };
        c.syslog = vec!["tcp://127.0.0.1:0".into()];
        c.tails = vec![format!("{}:text", tailed.display())];
    })
    .await;
    let mut socket = server.socket("").await;
    socket.events_until_ready().await;
    let old = "2019-06-01T00:00:00Z";

    // Our JSON API: refused whole, with the field named.
    let (status, body) = server.post(&json!({"action": "a", "timestamp": old})).await;
    assert_eq!(status, 400, "{body}");
    assert_eq!(body["errors"][0]["field"], "timestamp", "{body}");
    // OTLP: the record is refused in the partial success.
    let record = LogRecord {
        time_unix_nano: 1_559_347_200_000_000_000, // 2019-06-01
        ..record("old.otlp", vec![])
    };
    let r = post_otlp(
        &server,
        "application/json",
        serde_json::to_vec(&export(vec![record])).unwrap(),
        false,
    )
    .await;
    let answer: Value = r.json().await.unwrap();
    assert_eq!(
        answer["partialSuccess"]["rejectedLogRecords"], 1,
        "{answer}"
    );
    // Kubernetes, syslog and a tailed text line (whose own time was once its only check):
    // kept as log.unparsed with the reason, not stored as dated.
    let mut batch = kubernetes_batch(1);
    batch["items"][0]["requestReceivedTimestamp"] = json!(old);
    let r = server
        .http
        .post(server.url("/api/v1/kubernetes/audit"))
        .bearer_auth(TOKEN)
        .json(&batch)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    {
        use tokio::io::AsyncWriteExt;
        let mut tcp = tokio::net::TcpStream::connect(server.syslog[0].1)
            .await
            .unwrap();
        tcp.write_all(format!("<13>1 {old} host app - - - old news\n").as_bytes())
            .await
            .unwrap();
        tcp.shutdown().await.unwrap();
    }
    let mut kept = live_events(&mut socket, 2).await;
    {
        let mut f = std::fs::OpenOptions::new()
            .append(true)
            .open(&tailed)
            .unwrap();
        writeln!(f, "[2999-01-01T00:00:00Z] dated far ahead").unwrap();
    }
    kept.extend(live_events(&mut socket, 1).await);
    for e in &kept {
        assert_eq!(e["action"], "log.unparsed", "{e}");
        let error = e["metadata"]["error"].as_str().unwrap();
        assert!(error.contains("timestamp"), "{error}");
    }
    let sources: Vec<&str> = kept.iter().map(|e| e["source"].as_str().unwrap()).collect();
    assert!(sources.contains(&"kubernetes"), "{sources:?}");
    assert!(
        sources.iter().any(|s| s.starts_with("syslog:tcp://")),
        "{sources:?}"
    );
    assert!(
        sources.iter().any(|s| s.starts_with("tail:")),
        "{sources:?}"
    );
}

/// The value of the sample `series` (name and labels exactly as exposed) in a scrape.
fn sample(scrape: &str, series: &str) -> Option<f64> {
    scrape
        .lines()
        .find_map(|l| l.strip_prefix(series)?.strip_prefix(' '))
        .and_then(|v| v.trim().parse().ok())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_real_scrape_passes_promtool_and_counts_what_happened() {
    let server = TestServer::start_with(|c| {
        c.metrics_addr = Some("127.0.0.1:0".parse().unwrap());
    })
    .await;
    let metrics = server.metrics.unwrap();
    let mut socket = server.socket("").await;
    socket.events_until_ready().await;
    assert_eq!(server.post(&batch("metrics", 3)).await.0, 201);
    assert_eq!(server.post(&json!({"action": ""})).await.0, 400);
    let refused = LogRecord {
        time_unix_nano: 4_102_444_800_000_000_000,
        ..record("too.late", vec![])
    };
    let body = export(vec![record("fine", vec![]), refused]).encode_to_vec();
    assert_eq!(
        post_otlp(&server, "application/x-protobuf", body, false)
            .await
            .status(),
        200
    );
    assert_eq!(server.get("/api/v1/events?q=metrics").await.0, 200);
    assert_eq!(server.get("/api/dashboard/summary").await.0, 200);
    live_events(&mut socket, 4).await;

    let scrape = server
        .http
        .get(format!("http://{metrics}/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    // Prometheus's own linter, on exactly what a scraper gets.
    let (ok, linted) = run_with_input(
        "promtool".into(),
        vec!["check".into(), "metrics".into()],
        scrape.clone(),
    )
    .await;
    assert!(ok, "promtool: {linted}");
    // The metrics are the process's; other tests of this binary add to them, so at least.
    let at_least = |series: &str, n: f64| {
        let got = sample(&scrape, series);
        assert!(got.is_some_and(|v| v >= n), "{series} = {got:?}\n{scrape}");
    };
    at_least(
        r#"trailwatch_ingest_events_total{source="http",result="stored"}"#,
        3.0,
    );
    at_least(
        r#"trailwatch_ingest_events_total{source="http",result="refused"}"#,
        1.0,
    );
    at_least(
        r#"trailwatch_ingest_events_total{source="otlp",result="refused"}"#,
        1.0,
    );
    at_least(
        r#"trailwatch_http_requests_total{method="POST",route="/api/v1/events",status="201"}"#,
        1.0,
    );
    at_least(
        r#"trailwatch_http_requests_total{method="POST",route="/v1/logs",status="200"}"#,
        1.0,
    );
    at_least("trailwatch_commit_seconds_count", 2.0);
    at_least("trailwatch_commit_batch_events_count", 2.0);
    if !common::on_postgres() {
        // PostgreSQL makes its own commits durable; only SQLite's sync is ours to time.
        at_least("trailwatch_fsync_seconds_count", 1.0);
    }
    at_least("trailwatch_search_seconds_count", 1.0);
    at_least("trailwatch_overview_seconds_count", 1.0);
    at_least("trailwatch_live_sockets_open", 1.0);
    at_least("trailwatch_database_bytes", 4096.0);
    let (_, list) = server.get("/api/v1/events?sort=seq:desc&limit=1").await;
    at_least(
        "trailwatch_chain_head_seq",
        list["items"][0]["seq"].as_f64().unwrap(),
    );
    assert!(sample(&scrape, "trailwatch_chain_verified").is_some());
    // Prometheus itself asks for OpenMetrics, and gets it.
    let open = server
        .http
        .get(format!("http://{metrics}/metrics"))
        .header("Accept", "application/openmetrics-text;version=1.0.0")
        .send()
        .await
        .unwrap();
    assert!(open.headers()["content-type"]
        .to_str()
        .unwrap()
        .starts_with("application/openmetrics-text"));
    assert!(open.text().await.unwrap().ends_with("# EOF\n"));
}

/// Runs `tests/fixtures/ocsf_check.py` (the OCSF 1.2.0 schema through ocsf-lib) on `records`.
async fn ocsf_check(records: String) -> (bool, String) {
    run_with_input(python(), fixture_script("ocsf_check.py"), records).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ocsf_exports_follow_the_ocsf_schema_class_by_class() {
    let server = TestServer::start().await;
    let (status, _) = server
        .post(&json!([
            {"action": "auth.login", "user": {"id": "u1", "username": "alice"}, "outcome": "denied",
             "request": {"ip": "10.0.0.1", "method": "POST", "path": "/login", "statusCode": 401},
             "sessionId": "s1"},
            {"action": "auth.logout", "user": {"id": "u1"}},
            {"action": "user.create", "user": {"id": "admin"},
             "entity": {"type": "user", "id": "u9", "name": "bob"},
             "changes": {"role": {"before": null, "after": "viewer"}}},
            {"action": "user.password_reset", "user": {"id": "u9"}},
            {"action": "invoice.update", "level": "warning", "metadata": {"tenant": "acme"},
             "request": {"method": "PATCH", "path": "/invoices/1", "userAgent": "curl/8"}},
            {"action": "report.download", "request": {"method": "GET", "path": "/r/1"}},
            {"action": "backup.run", "level": "critical", "outcome": "failure",
             "correlationId": "job-7"},
        ]))
        .await;
    assert_eq!(status, 201);
    let export = |format: &'static str| {
        let server = &server;
        async move {
            let r = server
                .http
                .get(server.url(&format!(
                    "/api/v1/events/export?format={format}&sort=seq:asc"
                )))
                .bearer_auth(TOKEN)
                .send()
                .await
                .unwrap();
            assert_eq!(r.status(), 200);
            r.text().await.unwrap()
        }
    };
    let ndjson = export("ocsf-ndjson").await;
    let (ok, report) = ocsf_check(ndjson.clone()).await;
    assert!(ok, "{report}");
    let (ok, report) = ocsf_check(export("ocsf").await).await;
    assert!(ok, "{report}");

    let records: Vec<Value> = ndjson
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let classes: Vec<(u64, u64)> = records
        .iter()
        .map(|r| {
            (
                r["class_uid"].as_u64().unwrap(),
                r["activity_id"].as_u64().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        classes,
        [
            (3002, 1),
            (3002, 2),
            (3001, 1),
            (3001, 4),
            (6003, 3),
            (6003, 2),
            (0, 99)
        ]
    );
    let (_, list) = server.get("/api/v1/events?sort=seq:asc&limit=1").await;
    let first = &list["items"][0];
    let login = &records[0];
    assert_eq!(login["metadata"]["uid"], first["eventId"]);
    assert_eq!(login["metadata"]["sequence"], first["seq"]);
    let hash = format!("trailwatch.hash:{}", first["hash"].as_str().unwrap());
    assert!(login["metadata"]["labels"]
        .as_array()
        .unwrap()
        .contains(&json!(hash)));
    assert_eq!(login["user"]["name"], "alice");
    assert_eq!(login["src_endpoint"]["ip"], "10.0.0.1");
    assert_eq!(
        (login["status_id"].as_u64(), login["severity_id"].as_u64()),
        (Some(2), Some(3))
    );
    assert_eq!(login["type_uid"], 300201);
    assert_eq!(
        records[2]["user"]["uid"], "u9",
        "the account changed, not the actor"
    );
    assert_eq!(records[2]["actor"]["user"]["uid"], "admin");
    assert_eq!(records[4]["unmapped"]["httpMethod"], "PATCH");
    assert_eq!(records[6]["severity_id"], 5);
    assert_eq!(records[6]["metadata"]["correlation_uid"], "job-7");

    // The check can fail: an Authentication record without its user is refused.
    let mut broken = records[0].clone();
    broken.as_object_mut().unwrap().remove("user");
    let (ok, report) = ocsf_check(broken.to_string()).await;
    assert!(!ok && report.contains("user: is required"), "{report}");
}
