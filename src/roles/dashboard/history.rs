//! `GET /api/targets/{name}/history?from=&to=&step=1h|1d`: a target's long history
//! for reports and export ([`crate::targets::history`]), as JSON or, with
//! `Accept: text/csv`, as CSV.
//!
//! `from` and `to` are RFC 3339 or unix seconds; `to` defaults to now and `from` to a
//! day (`1h`) or 30 days (`1d`) before it; `step` defaults to `1h`. The steps that
//! cover `[from, to)` are answered, at most 744 hourly or 400 daily ones. Bad input is
//! a 400 that says why; a target the file does not list is a 404.

use actix_web::http::StatusCode;
use actix_web::http::header::{self, CacheControl, CacheDirective};
use actix_web::{HttpRequest, HttpResponse, web};
use serde_json::json;

use super::{Dashboard, latest};
use crate::clock::unix_now;
use crate::http;
use crate::http::observe::RequestId;
use crate::targets::history::{self, Step};

/// What the query asks for: the step and the range of steps, or why it cannot be
/// answered.
fn asked(query: &str, now: f64) -> Result<(Step, (i64, i64)), String> {
    let (mut from, mut to, mut step) = (None, None, None);
    for (key, value) in url::form_urlencoded::parse(query.as_bytes()) {
        match key.as_ref() {
            "from" => from = Some(history::parse_time(&value).map_err(|e| format!("from: {e}"))?),
            "to" => to = Some(history::parse_time(&value).map_err(|e| format!("to: {e}"))?),
            "step" => step = Some(Step::parse(&value)?),
            other => return Err(format!("unknown parameter {other:?}: from, to or step")),
        }
    }
    let step = step.unwrap_or(Step::Hour);
    let to = to.unwrap_or(now.floor() as i64);
    let from = from.unwrap_or_else(|| match step {
        Step::Hour => to - 86400,
        Step::Day => to - 30 * 86400,
    });
    Ok((step, history::steps(from, to, step)?))
}

/// Whether the client asks for CSV rather than JSON.
fn wants_csv(req: &HttpRequest) -> bool {
    req.headers()
        .get(header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|accept| accept.contains("text/csv"))
}

/// The handler.
pub(super) async fn serve(
    req: HttpRequest,
    name: web::Path<String>,
    dashboard: web::Data<Dashboard>,
) -> HttpResponse {
    let snapshot = match latest(&dashboard).await {
        Ok(snapshot) => snapshot,
        Err(starting) => return starting,
    };
    let name = name.into_inner();
    if !snapshot.targets.iter().any(|t| t.name == name) {
        return http::error::body(StatusCode::NOT_FOUND, &format!("no target {name:?}"));
    }
    let now = unix_now();
    let (step, range) = match asked(req.query_string(), now) {
        Ok(asked) => asked,
        Err(why) => return http::error::body(StatusCode::BAD_REQUEST, &why),
    };
    let store = dashboard.store.as_ref();
    let read = async {
        let points = history::export(store, &name, step, range).await?;
        let uptime = history::uptimes(store, &name, now).await?;
        Ok::<_, crate::store::StoreError>((points, uptime))
    };
    let (points, uptime) = match read.await {
        Ok(read) => read,
        Err(e) => {
            tracing::warn!(
                request_id = RequestId::of_request(&req),
                target_name = %name,
                error = %e,
                "history unreadable"
            );
            return http::error::body(
                StatusCode::SERVICE_UNAVAILABLE,
                &format!("history unreadable: {e}"),
            );
        }
    };
    let mut res = HttpResponse::Ok();
    res.insert_header(CacheControl(vec![CacheDirective::NoStore]))
        .insert_header((header::VARY, "Accept"));
    if wants_csv(&req) {
        return res
            .content_type("text/csv; charset=utf-8")
            .body(history::csv(&points));
    }
    res.json(json!({
        "target": name,
        "step": step,
        "from": range.0 * step.seconds(),
        "to": (range.1 + 1) * step.seconds(),
        "uptime": uptime,
        "points": points,
        "timestamp": now,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_query_is_read_with_defaults_and_bad_input_says_why() {
        let now = 100.0 * 86400.0;
        assert_eq!(asked("", now), Ok((Step::Hour, (99 * 24, 100 * 24 - 1))));
        assert_eq!(asked("step=1d", now), Ok((Step::Day, (70, 99))));
        assert_eq!(
            asked("from=1970-01-02T00:00:00Z&to=259200&step=1d", now),
            Ok((Step::Day, (1, 2)))
        );
        let bad = |query: &str| asked(query, now).expect_err(query);
        assert!(bad("step=1w").contains("neither 1h nor 1d"));
        assert!(bad("from=soon").contains("from:"));
        assert!(bad("to=0&from=10").contains("not after"));
        assert!(bad("step=1h&from=0").contains("at most 744"));
        assert!(bad("limit=3").contains("unknown parameter"));
    }
}
