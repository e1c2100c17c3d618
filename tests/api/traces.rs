//! Traces: a job submitted with a `traceparent` is one trace from the gateway through
//! the Redis stream to the worker, as an OTLP/HTTP receiver on loopback sees it; each
//! role exports under its own `service.name`, also in `svc all`; with no endpoint set
//! nothing of it runs.

use std::net::TcpListener;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use actix_web::{App, HttpResponse, HttpServer, web};
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1::any_value::Value;
use prost::Message;

use crate::helpers::{
    RedisServer, SvcProcess, all_args, eventually, gateway_process, worker_process,
};

/// One span as the receiver got it.
#[derive(Debug, Clone)]
struct Seen {
    service: String,
    trace_id: String,
    span_id: String,
    parent_span_id: String,
    name: String,
}

/// An OTLP/HTTP receiver (protobuf) on 127.0.0.1: keeps every span posted to
/// `/v1/traces`; stopped on drop.
struct Receiver {
    endpoint: String,
    spans: Arc<Mutex<Vec<Seen>>>,
    server: actix_web::dev::ServerHandle,
}

impl Receiver {
    async fn start() -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind the receiver");
        let endpoint = format!("http://{}", listener.local_addr().expect("address"));
        let spans = Arc::new(Mutex::new(Vec::new()));
        let kept = web::Data::new(spans.clone());
        let server = HttpServer::new(move || {
            App::new()
                .app_data(kept.clone())
                .app_data(web::PayloadConfig::new(16 * 1024 * 1024))
                .route("/v1/traces", web::post().to(receive))
        })
        .workers(1)
        .disable_signals()
        .listen(listener)
        .expect("listen")
        .run();
        let handle = server.handle();
        tokio::spawn(server);
        Receiver {
            endpoint,
            spans,
            server: handle,
        }
    }

    /// The spans of trace `trace_id` received so far.
    fn trace(&self, trace_id: &str) -> Vec<Seen> {
        self.spans
            .lock()
            .expect("spans lock")
            .iter()
            .filter(|s| s.trace_id == trace_id)
            .cloned()
            .collect()
    }

    /// Every span received so far.
    fn all(&self) -> Vec<Seen> {
        self.spans.lock().expect("spans lock").clone()
    }
}

impl Drop for Receiver {
    fn drop(&mut self) {
        drop(self.server.stop(false));
    }
}

async fn receive(spans: web::Data<Arc<Mutex<Vec<Seen>>>>, body: web::Bytes) -> HttpResponse {
    let Ok(request) = ExportTraceServiceRequest::decode(body) else {
        return HttpResponse::BadRequest().finish();
    };
    let mut seen = Vec::new();
    for resource_spans in request.resource_spans {
        let service = resource_spans
            .resource
            .iter()
            .flat_map(|r| &r.attributes)
            .find(|kv| kv.key == "service.name")
            .and_then(
                |kv| match kv.value.as_ref().and_then(|v| v.value.as_ref()) {
                    Some(Value::StringValue(name)) => Some(name.clone()),
                    _ => None,
                },
            )
            .unwrap_or_default();
        for span in resource_spans.scope_spans.into_iter().flat_map(|s| s.spans) {
            seen.push(Seen {
                service: service.clone(),
                trace_id: hex(&span.trace_id),
                span_id: hex(&span.span_id),
                parent_span_id: hex(&span.parent_span_id),
                name: span.name,
            });
        }
    }
    spans.lock().expect("spans lock").extend(seen);
    HttpResponse::Ok()
        .content_type("application/x-protobuf")
        .finish()
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// A fresh trace id and the id of the client's span, as hex.
fn client_span() -> (String, String) {
    let id = uuid::Uuid::new_v4().simple().to_string();
    (id.clone(), id[..16].to_owned())
}

/// POSTs a `data_processing` job to `gateway` with `traceparent`; returns its id.
async fn submit_traced(gateway: &SvcProcess, traceparent: &str) -> String {
    let res = crate::helpers::client()
        .post(gateway.url("/api/jobs"))
        .header("content-type", "application/json")
        .header("traceparent", traceparent)
        .body(r#"{"type":"data_processing","size":100}"#)
        .send()
        .await
        .expect("POST /api/jobs");
    assert_eq!(res.status(), 202);
    let body: serde_json::Value = res.json().await.expect("JSON");
    body["id"].as_str().expect("an id").to_owned()
}

/// Waits until job `id`, read from `gateway`, is done; returns its record.
async fn done(gateway: &SvcProcess, id: &str) -> serde_json::Value {
    let client = crate::helpers::client();
    let url = gateway.url(&format!("/api/jobs/{id}"));
    eventually(Duration::from_secs(20), "the job to be done", || async {
        let job = crate::helpers::try_json(&client, &url).await?;
        (job["state"] == "done").then_some(job)
    })
    .await
}

/// The JSON log lines `svc` wrote so far.
fn json_lines(svc: &SvcProcess) -> Vec<serde_json::Value> {
    svc.output()
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect()
}

/// The spans of `trace_id` once the receiver has one of each of `names`.
async fn spans_named(receiver: &Receiver, trace_id: &str, names: &[&str]) -> Vec<Seen> {
    eventually(
        Duration::from_secs(20),
        &format!("spans {names:?} under trace {trace_id}"),
        || async {
            let spans = receiver.trace(trace_id);
            names
                .iter()
                .all(|name| spans.iter().any(|s| s.name == *name))
                .then_some(spans)
        },
    )
    .await
}

/// The span of `spans` named `name`.
fn named<'a>(spans: &'a [Seen], name: &str) -> &'a Seen {
    spans
        .iter()
        .find(|s| s.name == name)
        .unwrap_or_else(|| panic!("no span {name:?} in {spans:#?}"))
}

/// The spans of a submitted `data_processing` job's trace.
const JOB_SPANS: [&str; 3] = ["POST /api/jobs", "queue wait", "job data_processing"];

#[tokio::test]
async fn a_job_is_one_trace_from_the_gateway_through_redis_to_the_worker() {
    let receiver = Receiver::start().await;
    let redis = RedisServer::start();
    let env = [
        ("OTEL_EXPORTER_OTLP_ENDPOINT", receiver.endpoint.as_str()),
        ("OTEL_BSP_SCHEDULE_DELAY", "100"),
        ("APP_ENV", "production"),
    ];
    let gateway = gateway_process(&redis, &env).await;
    let worker = worker_process(&redis, &env).await;
    let (trace_id, client_span_id) = client_span();
    let traceparent = format!("00-{trace_id}-{client_span_id}-01");

    let id = submit_traced(&gateway, &traceparent).await;
    let record = done(&gateway, &id).await;
    // The trace travels in the job's record, under the same trace id.
    let stored = record["traceparent"]
        .as_str()
        .expect("a stored traceparent");
    assert!(stored.starts_with(&format!("00-{trace_id}-")), "{stored}");

    let spans = spans_named(&receiver, &trace_id, &JOB_SPANS).await;
    // The gateway's request span continues the client's span...
    let request = named(&spans, "POST /api/jobs");
    assert_eq!(request.service, "api-gateway");
    assert_eq!(request.parent_span_id, client_span_id);
    // ...the worker's wait and run hang under the span that enqueued the job...
    let enqueued = &stored[36..52];
    let wait = named(&spans, "queue wait");
    let run = named(&spans, "job data_processing");
    for span in [wait, run] {
        assert_eq!(span.service, "worker-service");
        assert_eq!(span.parent_span_id, enqueued, "{span:?}");
    }
    // ...which is the gateway's.
    assert!(
        spans
            .iter()
            .any(|s| s.span_id == enqueued && s.service == "api-gateway"),
        "{spans:#?}"
    );

    // Log lines written inside the trace carry its id.
    for svc in [&gateway, &worker] {
        eventually(
            Duration::from_secs(10),
            "a log line with the trace id",
            || async {
                json_lines(svc)
                    .iter()
                    .any(|l| l["trace_id"] == trace_id.as_str() && l["span_id"].is_string())
                    .then_some(())
            },
        )
        .await;
    }
}

#[tokio::test]
async fn svc_all_exports_each_role_under_its_own_service_name() {
    let receiver = Receiver::start().await;
    let env = [
        ("OTEL_EXPORTER_OTLP_ENDPOINT", receiver.endpoint.as_str()),
        ("OTEL_BSP_SCHEDULE_DELAY", "100"),
    ];
    let mut svc = SvcProcess::spawn(&all_args(&["--host", "127.0.0.1", "--refresh", "1s"]), &env);
    svc.wait_ready().await;
    let (trace_id, client_span_id) = client_span();
    let id = submit_traced(&svc, &format!("00-{trace_id}-{client_span_id}-01")).await;
    done(&svc, &id).await;

    let spans = spans_named(&receiver, &trace_id, &JOB_SPANS).await;
    assert_eq!(named(&spans, "POST /api/jobs").service, "api-gateway");
    assert_eq!(named(&spans, "queue wait").service, "worker-service");
    assert_eq!(
        named(&spans, "job data_processing").service,
        "worker-service"
    );
    // The dashboard's probes of the other roles are traces of its own, which the
    // probed servers continue under their own names.
    eventually(
        Duration::from_secs(20),
        "a dashboard probe continued by the gateway",
        || async {
            let all = receiver.all();
            all.iter()
                .filter(|s| s.service == "dashboard")
                .any(|probe| {
                    all.iter().any(|s| {
                        s.service == "api-gateway"
                            && s.trace_id == probe.trace_id
                            && s.parent_span_id == probe.span_id
                    })
                })
                .then_some(())
        },
    )
    .await;
}

#[tokio::test]
async fn with_no_endpoint_nothing_is_traced() {
    let redis = RedisServer::start();
    let gateway = gateway_process(&redis, &[("APP_ENV", "production")]).await;
    let (trace_id, client_span_id) = client_span();
    let id = submit_traced(&gateway, &format!("00-{trace_id}-{client_span_id}-01")).await;
    let record = gateway.get_json(&format!("/api/jobs/{id}")).await;
    assert_eq!(record["state"], "queued");
    assert!(record.get("traceparent").is_none(), "{record}");
    // Its access line is written, and carries no trace.
    let line = eventually(
        Duration::from_secs(10),
        "the POST's access line",
        || async {
            json_lines(&gateway)
                .into_iter()
                .find(|l| l["message"] == "request" && l["route"] == "/api/jobs")
        },
    )
    .await;
    assert!(line.get("trace_id").is_none(), "{line}");
    assert!(!gateway.output().contains("trace_id"));
}
