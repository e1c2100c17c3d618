//! Traces: OpenTelemetry spans exported over OTLP/HTTP (protobuf), off unless
//! `OTEL_EXPORTER_OTLP_ENDPOINT` (or `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`) is set.
//!
//! The code's `tracing` spans become OpenTelemetry spans through the layer of
//! [`layer`]. A trace crosses processes as a W3C `traceparent`: it comes in on HTTP
//! requests, goes out on the dashboard's and the worker's probes, and travels with a
//! job in its record, so one trace shows the submission at the gateway, the job's wait
//! in the queue and its run on a worker.
//!
//! Each role's spans carry that role's `service.name` (`api-gateway`,
//! `worker-service`, `dashboard`), also in `svc all`: there is one tracer provider per
//! role, and the span that opens a role's part of a trace ([`open`]) puts the role in
//! its OpenTelemetry context, which every span under it inherits.
//!
//! Besides the endpoint, the SDK reads the standard variables itself:
//! `OTEL_BSP_SCHEDULE_DELAY` and the other batch settings, `OTEL_TRACES_SAMPLER`,
//! `OTEL_EXPORTER_OTLP_HEADERS`, `OTEL_EXPORTER_OTLP_TIMEOUT`,
//! `OTEL_RESOURCE_ATTRIBUTES`. With the endpoint unset nothing of this is installed.

use std::collections::HashMap;
use std::sync::OnceLock;
use std::time::{Duration, SystemTime};

use opentelemetry::propagation::TextMapPropagator;
use opentelemetry::trace::{Span as _, SpanBuilder, TraceContextExt, Tracer, TracerProvider};
use opentelemetry::{Context, KeyValue};
use opentelemetry_sdk::Resource;
use opentelemetry_sdk::propagation::TraceContextPropagator;
use opentelemetry_sdk::trace::{SdkTracer, SdkTracerProvider};
use tracing_opentelemetry::OpenTelemetrySpanExt;
use tracing_subscriber::Layer;
use tracing_subscriber::registry::LookupSpan;

use crate::service::Role;

/// The variables that turn traces on, the signal's own first (the exporter reads them
/// in this order too).
const ENDPOINT_VARS: [&str; 2] = [
    "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT",
    "OTEL_EXPORTER_OTLP_ENDPOINT",
];

/// The W3C header (and job-record field) that carries a trace context.
pub const TRACEPARENT: &str = "traceparent";

/// How long shutdown waits for the spans still buffered to be sent.
const FLUSH_TIMEOUT: Duration = Duration::from_secs(3);

/// The tracer of this process, once traces are on.
static TRACER: OnceLock<RoleTracer> = OnceLock::new();

/// Whether this process exports traces.
pub fn enabled() -> bool {
    TRACER.get().is_some()
}

/// A tracer per role: a span goes to the tracer of the role in its parent context,
/// else to the process's first role's.
#[derive(Debug, Clone)]
pub struct RoleTracer {
    first: (Role, SdkTracer),
    others: Vec<(Role, SdkTracer)>,
}

impl RoleTracer {
    fn of(&self, role: Option<&Role>) -> &SdkTracer {
        role.and_then(|role| self.others.iter().find(|(r, _)| r == role))
            .map_or(&self.first.1, |(_, tracer)| tracer)
    }
}

impl Tracer for RoleTracer {
    type Span = opentelemetry_sdk::trace::Span;

    fn build_with_context(&self, builder: SpanBuilder, parent_cx: &Context) -> Self::Span {
        self.of(parent_cx.get::<Role>())
            .build_with_context(builder, parent_cx)
    }
}

/// Flushes and stops the exporters when dropped: spans still buffered are sent, for
/// [`FLUSH_TIMEOUT`] at most.
pub struct TraceGuard {
    providers: Vec<SdkTracerProvider>,
}

impl Drop for TraceGuard {
    fn drop(&mut self) {
        // All at once: with a collector that hangs, `svc all` waits one timeout, not
        // one per role.
        std::thread::scope(|scope| {
            for provider in &self.providers {
                scope.spawn(move || {
                    if let Err(e) = provider.shutdown_with_timeout(FLUSH_TIMEOUT) {
                        tracing::warn!(error = %e, "spans not flushed at shutdown");
                    }
                });
            }
        });
    }
}

/// Starts exporting the spans of `roles` (the first is the default) when an OTLP
/// endpoint is set; `None` when none is, and then nothing is installed.
pub fn start(roles: &[Role]) -> Result<Option<TraceGuard>, String> {
    let Some(var) = endpoint_var() else {
        return Ok(None);
    };
    // The exporter's HTTP client speaks TLS for https endpoints with the process's
    // crypto.
    crate::tls::install();
    let mut tracers = Vec::new();
    let mut providers = Vec::new();
    for &role in roles {
        let exporter = opentelemetry_otlp::SpanExporter::builder()
            .with_http()
            .build()
            .map_err(|e| format!("{var}: {e}"))?;
        // The resource reads OTEL_RESOURCE_ATTRIBUTES; the role's name wins over any
        // service name in it.
        let resource = Resource::builder()
            .with_service_name(role.service().as_str())
            .with_attribute(KeyValue::new("service.version", env!("CARGO_PKG_VERSION")))
            .build();
        let provider = SdkTracerProvider::builder()
            .with_batch_exporter(exporter)
            .with_resource(resource)
            .build();
        tracers.push((role, provider.tracer("svc")));
        providers.push(provider);
    }
    let mut tracers = tracers.into_iter();
    let Some(first) = tracers.next() else {
        return Ok(None);
    };
    let tracer = RoleTracer {
        first,
        others: tracers.collect(),
    };
    TRACER
        .set(tracer)
        .map_err(|_| "traces were started already".to_owned())?;
    Ok(Some(TraceGuard { providers }))
}

/// The variable that sets the endpoint, unless traces are disabled.
fn endpoint_var() -> Option<&'static str> {
    let disabled = std::env::var("OTEL_SDK_DISABLED").is_ok_and(|v| v.eq_ignore_ascii_case("true"));
    if disabled {
        return None;
    }
    ENDPOINT_VARS
        .iter()
        .copied()
        .find(|var| std::env::var(var).is_ok_and(|v| !v.trim().is_empty()))
}

/// The layer that turns `tracing` spans into exported spans, once [`start`] has
/// started traces: the crate's spans from DEBUG up, and its events from INFO up as
/// span events (the exporter's own events never, so exporting cannot feed itself).
pub fn layer<S>() -> Option<impl Layer<S>>
where
    S: tracing::Subscriber + for<'span> LookupSpan<'span>,
{
    let tracer = TRACER.get()?.clone();
    let ours = tracing_subscriber::filter::filter_fn(|meta| {
        let wanted = if meta.is_span() {
            tracing::Level::DEBUG
        } else {
            tracing::Level::INFO
        };
        meta.target().starts_with("svc") && *meta.level() <= wanted
    });
    Some(
        tracing_opentelemetry::layer()
            .with_tracer(tracer)
            .with_threads(false)
            .with_filter(ours),
    )
}

/// Makes `span` (not entered yet) the start of `role`'s part of a trace: under the
/// remote span that `traceparent` names when it is a valid W3C value, else at the root
/// of a trace of its own. Every span under it is exported as `role`'s.
pub fn open(span: &tracing::Span, role: Role, traceparent: Option<&str>) {
    if !enabled() {
        return;
    }
    let parent = traceparent.map_or_else(Context::new, remote);
    // Fails only for a span this layer does not record, or one already entered:
    // either way there is nothing to attach.
    let _ = span.set_parent(parent.with_value(role));
}

/// `span`'s trace context as a W3C `traceparent` value; `None` when traces are off or
/// the span is not recorded.
pub fn traceparent(span: &tracing::Span) -> Option<String> {
    if !enabled() {
        return None;
    }
    let mut carrier = HashMap::new();
    TraceContextPropagator::new().inject_context(&span.context(), &mut carrier);
    carrier.remove(TRACEPARENT)
}

/// Records `role`'s span `name` under the remote span that `traceparent` names, from
/// `start` to `end`: time that passed before any span of this process existed, such
/// as a job's wait in the queue.
pub fn record(
    name: &'static str,
    role: Role,
    traceparent: &str,
    start: SystemTime,
    end: SystemTime,
) {
    let Some(tracer) = TRACER.get() else {
        return;
    };
    let parent = remote(traceparent).with_value(role);
    if !parent.span().span_context().is_valid() {
        return;
    }
    let mut span = tracer
        .span_builder(name)
        .with_start_time(start)
        .start_with_context(tracer, &parent);
    span.end_with_timestamp(end);
}

/// The trace and span ids (hex) of the span being run on this thread, when traces are
/// on and it is recorded: what log lines carry.
pub fn current_ids() -> Option<(String, String)> {
    if !enabled() {
        return None;
    }
    Context::map_current(|cx| {
        let span = cx.span();
        let ids = span.span_context();
        ids.is_valid()
            .then(|| (ids.trace_id().to_string(), ids.span_id().to_string()))
    })
}

/// The remote context a `traceparent` value names (empty when it is malformed).
fn remote(traceparent: &str) -> Context {
    let carrier = HashMap::from([(TRACEPARENT.to_owned(), traceparent.to_owned())]);
    TraceContextPropagator::new().extract(&carrier)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_traceparent_names_its_remote_span() {
        let value = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
        let cx = remote(value);
        let span = cx.span();
        let ids = span.span_context();
        assert!(ids.is_remote());
        assert_eq!(
            ids.trace_id().to_string(),
            "4bf92f3577b34da6a3ce929d0e0e4736"
        );
        assert_eq!(ids.span_id().to_string(), "00f067aa0ba902b7");
    }

    #[test]
    fn a_malformed_traceparent_names_nothing() {
        for bad in [
            "",
            "00-xyz",
            "00-00000000000000000000000000000000-00f067aa0ba902b7-01",
        ] {
            assert!(!remote(bad).span().span_context().is_valid(), "{bad}");
        }
    }

    #[test]
    fn with_traces_off_nothing_is_read_or_written() {
        let span = tracing::info_span!("off");
        open(
            &span,
            Role::Gateway,
            Some("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"),
        );
        assert_eq!(traceparent(&span), None);
        assert_eq!(current_ids(), None);
    }
}
