//! The operators' endpoint (`msglog serve --metrics ADDR:PORT`): Prometheus
//! metrics at `/metrics`, liveness at `/healthz`, readiness at `/readyz`,
//! over HTTP/1.1 on its own port, served by hyper on the server's runtime.
//!
//! Nothing here touches a connection's path: every metric is read from the
//! server's atomics (`ServerView`) when it is scraped, by a prometheus-client
//! collector, and encoded in the Prometheus text format (0.0.4).

use std::convert::Infallible;
use std::fmt;
use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::Full;
use hyper::header::{HeaderValue, ALLOW, CONTENT_TYPE};
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::{TokioIo, TokioTimer};
use prometheus_client::collector::Collector;
use prometheus_client::encoding::{prometheus_text, DescriptorEncoder, EncodeMetric, NoLabelSet};
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::metrics::MetricType;
use prometheus_client::registry::{Registry, Unit};
use tokio::net::TcpListener;
use tokio::sync::Semaphore;

use super::diagnostics::{self, Throttle};
use super::stats::{HistogramSnapshot, Readiness, ServerView};

/// Scrapes served at once; more connections are closed at once. A scraper
/// or a health checker needs one or two.
const MAX_CONNECTIONS: usize = 32;
/// A client must send its request headers within this time.
const HEADER_TIMEOUT: Duration = Duration::from_secs(10);
/// Nothing may hold a connection longer, however slowly it reads.
const CONNECTION_TIMEOUT: Duration = Duration::from_secs(30);

/// Why the metrics endpoint could not start.
#[derive(Debug, thiserror::Error)]
pub enum MetricsError {
    #[error("metrics address {addr} is already in use; stop the other program or pick another --metrics port")]
    AddressInUse { addr: SocketAddr },
    #[error("cannot listen for metrics on {addr}: {source}")]
    Bind { addr: SocketAddr, source: io::Error },
}

/// The metrics endpoint's socket, bound but not serving yet.
pub struct MetricsListener {
    listener: TcpListener,
    local_addr: SocketAddr,
}

impl MetricsListener {
    pub async fn bind(addr: SocketAddr) -> Result<MetricsListener, MetricsError> {
        let bind_err = |source: io::Error| {
            if source.kind() == io::ErrorKind::AddrInUse {
                MetricsError::AddressInUse { addr }
            } else {
                MetricsError::Bind { addr, source }
            }
        };
        let listener = TcpListener::bind(addr).await.map_err(bind_err)?;
        let local_addr = listener.local_addr().map_err(bind_err)?;
        Ok(MetricsListener {
            listener,
            local_addr,
        })
    }

    /// Where it listens (the real port when bound to port 0).
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// Answers requests about `view` until `stop` completes. Each connection
    /// carries one request (no keep-alive), within bounded time.
    pub async fn serve(self, view: ServerView, stop: impl Future<Output = ()>) {
        let endpoint = Arc::new(Endpoint::new(view));
        let permits = Arc::new(Semaphore::new(MAX_CONNECTIONS));
        // Out of descriptors, accept fails over and over: one line per interval.
        let mut accept_failed = Throttle::new(diagnostics::INTERVAL);
        tokio::pin!(stop);
        loop {
            let accepted = tokio::select! {
                accepted = self.listener.accept() => accepted,
                () = &mut stop => return,
            };
            let stream = match accepted {
                Ok((stream, _)) => stream,
                Err(e) => {
                    let now = Instant::now();
                    if let Some(s) = accept_failed.summary(now) {
                        tracing::warn!(
                            failed = s.count,
                            "metrics: accept failed {} more times in the last {}",
                            s.count,
                            s.over_text()
                        );
                    }
                    if accept_failed.event(now) {
                        tracing::warn!(error = %e, "metrics: accept failed");
                    }
                    // Out of descriptors or the like: back off, don't spin.
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            };
            let Ok(permit) = permits.clone().try_acquire_owned() else {
                tracing::debug!("metrics: too many connections at once; closing one");
                continue;
            };
            let endpoint = endpoint.clone();
            tokio::spawn(async move {
                let service = hyper::service::service_fn(move |request: Request<_>| {
                    let response = endpoint.respond(request.method(), request.uri().path());
                    async move { Ok::<_, Infallible>(response) }
                });
                let connection = hyper::server::conn::http1::Builder::new()
                    .timer(TokioTimer::new())
                    .header_read_timeout(HEADER_TIMEOUT)
                    .keep_alive(false)
                    .serve_connection(TokioIo::new(stream), service);
                match tokio::time::timeout(CONNECTION_TIMEOUT, connection).await {
                    Ok(Ok(())) => {}
                    Ok(Err(e)) => tracing::debug!(error = %e, "metrics: connection failed"),
                    Err(_) => tracing::debug!("metrics: connection timed out"),
                }
                drop(permit);
            });
        }
    }
}

/// What the endpoint answers; pure apart from reading the counters.
pub struct Endpoint {
    view: ServerView,
    registry: Registry,
}

impl Endpoint {
    pub fn new(view: ServerView) -> Endpoint {
        let mut registry = Registry::with_prefix("msglog");
        registry.register_collector(Box::new(ServerCollector { view: view.clone() }));
        Endpoint { view, registry }
    }

    /// The metrics in the Prometheus text format.
    pub fn metrics_text(&self) -> Result<String, fmt::Error> {
        let mut text = String::new();
        prometheus_text::encode(&mut text, &self.registry)?;
        Ok(text)
    }

    /// The response to a request for `path`.
    pub fn respond(&self, method: &Method, path: &str) -> Response<Full<Bytes>> {
        let known = matches!(path, "/metrics" | "/healthz" | "/readyz");
        if !known {
            return text(
                StatusCode::NOT_FOUND,
                "not found; try /metrics, /healthz or /readyz\n".into(),
            );
        }
        if method != Method::GET && method != Method::HEAD {
            let mut response = text(
                StatusCode::METHOD_NOT_ALLOWED,
                "only GET and HEAD are allowed\n".into(),
            );
            response
                .headers_mut()
                .insert(ALLOW, HeaderValue::from_static("GET, HEAD"));
            return response;
        }
        match path {
            "/healthz" => text(StatusCode::OK, "ok\n".into()),
            "/readyz" => {
                let readiness = self.view.readiness();
                let status = if readiness == Readiness::Ready {
                    StatusCode::OK
                } else {
                    StatusCode::SERVICE_UNAVAILABLE
                };
                text(status, format!("{}\n", readiness.describe()))
            }
            _ => match self.metrics_text() {
                Ok(body) => {
                    let mut response = text(StatusCode::OK, body);
                    response.headers_mut().insert(
                        CONTENT_TYPE,
                        HeaderValue::from_static(prometheus_text::CONTENT_TYPE),
                    );
                    response
                }
                Err(_) => text(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "encoding the metrics failed\n".into(),
                ),
            },
        }
    }
}

fn text(status: StatusCode, body: String) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(Bytes::from(body)));
    *response.status_mut() = status;
    response.headers_mut().insert(
        CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    response
}

/// Reads the server's counters at each scrape.
#[derive(Debug)]
struct ServerCollector {
    view: ServerView,
}

fn counter(
    encoder: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    unit: Option<&Unit>,
    value: u64,
) -> fmt::Result {
    let metric = ConstCounter::new(value);
    metric.encode(encoder.encode_descriptor(name, help, unit, metric.metric_type())?)
}

fn gauge(
    encoder: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    unit: Option<&Unit>,
    value: u64,
) -> fmt::Result {
    let metric = ConstGauge::new(value);
    metric.encode(encoder.encode_descriptor(name, help, unit, metric.metric_type())?)
}

fn histogram(
    encoder: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    h: &HistogramSnapshot,
) -> fmt::Result {
    encoder
        .encode_descriptor(name, help, Some(&Unit::Seconds), MetricType::Histogram)?
        .encode_histogram::<NoLabelSet>(h.sum_seconds, h.count, &h.buckets, None)
}

impl Collector for ServerCollector {
    fn encode(&self, mut e: DescriptorEncoder) -> fmt::Result {
        let now = self.view.snapshot();
        let e = &mut e;
        gauge(
            e,
            "connections_open",
            "Client connections open now.",
            None,
            now.connections_open,
        )?;
        counter(
            e,
            "connections_accepted",
            "Client connections accepted (those refused at --max-connections are not counted here).",
            None,
            now.connections_accepted,
        )?;
        counter(
            e,
            "connections_refused",
            "Client connections refused with 0xFF because --max-connections were open.",
            None,
            now.connections_refused,
        )?;
        counter(
            e,
            "logins_accepted",
            "PASS frames accepted: sessions that logged in.",
            None,
            now.logins_accepted,
        )?;
        counter(
            e,
            "logins_rejected",
            "Logins refused: NAME or PASS rejected (rules EmptyName, NameStartsWithNul, EmptyPassword, PasswordRejected).",
            None,
            now.logins_rejected,
        )?;
        counter(
            e,
            "messages_appended",
            "Messages appended to the log and acknowledged (counted once per batch).",
            None,
            now.messages,
        )?;
        counter(
            e,
            "messages_appended_payload",
            "Payload bytes of the messages appended to the log (counted once per batch).",
            Some(&Unit::Bytes),
            now.message_bytes,
        )?;
        {
            let mut family = e.encode_descriptor(
                "rejections",
                "Connections closed after 0xFF, by the spec rule that was broken (label rule).",
                None,
                MetricType::Counter,
            )?;
            for (rule, count) in now.rejections {
                ConstCounter::new(count).encode(family.encode_family(&[("rule", rule)])?)?;
            }
        }
        histogram(
            e,
            "log_append_duration",
            "Time one write of a group of records to the log took; one observation per group write (one or more batches of messages), not per message.",
            &now.append_latency,
        )?;
        if let Some(sync) = &now.sync_latency {
            histogram(
                e,
                "log_sync_duration",
                "Time one fdatasync of the log took (--fsync); one observation per group write, not per message.",
                sync,
            )?;
        }
        counter(
            e,
            "log_write_errors",
            "Group writes to the log that failed (disk full, I/O error); their messages were rejected with 0xFF.",
            None,
            now.log_write_errors,
        )?;
        gauge(
            e,
            "log_failing",
            "1 while appends to the log fail, from the first failed write to the next one that works; else 0.",
            None,
            u64::from(now.log_failing),
        )?;
        counter(
            e,
            "log_reopens",
            "Times the log was reopened (SIGHUP).",
            None,
            now.log_reopens,
        )?;
        counter(
            e,
            "log_reopen_failures",
            "Reopens of the log that failed; the server kept writing to the log it had open.",
            None,
            now.log_reopen_failures,
        )?;
        counter(
            e,
            "busy_polls",
            "Times a connection started busy-polling for its client's next frame (--busy-poll-us).",
            None,
            now.busy_polls,
        )?;
        counter(
            e,
            "busy_poll_hits",
            "Busy-polls during which the client's next frame came.",
            None,
            now.busy_poll_hits,
        )?;
        counter(
            e,
            "rate_limit_waits",
            "Times a connection over its rate (--rate-limit, --rate-limit-per-name) stopped reading until a token returned.",
            None,
            now.rate_waits,
        )?;
        gauge(
            e,
            "frame_budget_used",
            "Memory held in partial frames beyond each connection's 4 KiB allowance, charged to --frame-buffer-budget.",
            Some(&Unit::Bytes),
            now.frame_budget_used,
        )?;
        gauge(
            e,
            "frame_budget_limit",
            "The partial-frame budget (--frame-buffer-budget).",
            Some(&Unit::Bytes),
            now.frame_budget_limit,
        )?;
        gauge(
            e,
            "ready",
            "1 while the server accepts connections and appends to the log work (what /readyz answers 200 for); else 0.",
            None,
            u64::from(now.readiness == Readiness::Ready),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proto::machine::Violation;
    use crate::server::budget::FrameBudget;
    use crate::server::stats::{LogStats, Stats};

    fn view(fsync: bool) -> ServerView {
        ServerView {
            stats: Arc::new(Stats::default()),
            log: Arc::new(LogStats::default()),
            budget: Arc::new(FrameBudget::new(1 << 20)),
            fsync,
        }
    }

    fn body(response: Response<Full<Bytes>>) -> String {
        use http_body_util::BodyExt;
        let bytes = futures_block_on(response.into_body().collect())
            .unwrap()
            .to_bytes();
        String::from_utf8(bytes.to_vec()).unwrap()
    }

    /// A `Full` body is ready at once: one poll collects it.
    fn futures_block_on<F: Future>(f: F) -> F::Output {
        let mut f = std::pin::pin!(f);
        match f
            .as_mut()
            .poll(&mut std::task::Context::from_waker(std::task::Waker::noop()))
        {
            std::task::Poll::Ready(out) => out,
            std::task::Poll::Pending => panic!("body not ready"),
        }
    }

    /// The value of the sample `name` (with its labels, as written).
    fn sample(text: &str, name: &str) -> Option<f64> {
        text.lines()
            .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.parse().ok())
    }

    #[test]
    fn counters_are_read_from_the_server_at_each_scrape() {
        let view = view(false);
        let endpoint = Endpoint::new(view.clone());
        view.stats.appended(3, 300);
        view.stats.rejected(&Violation::PasswordRejected);
        view.log.append_latency.observe(Duration::from_micros(7));
        let text = endpoint.metrics_text().unwrap();
        assert_eq!(sample(&text, "msglog_messages_appended_total"), Some(3.0));
        assert_eq!(
            sample(&text, "msglog_messages_appended_payload_bytes_total"),
            Some(300.0)
        );
        assert_eq!(
            sample(&text, r#"msglog_rejections_total{rule="PasswordRejected"}"#),
            Some(1.0)
        );
        assert_eq!(
            sample(&text, r#"msglog_rejections_total{rule="ShuttingDown"}"#),
            Some(0.0)
        );
        assert_eq!(sample(&text, "msglog_logins_rejected_total"), Some(1.0));
        assert_eq!(
            sample(
                &text,
                r#"msglog_log_append_duration_seconds_bucket{le="5e-06"}"#
            ),
            Some(0.0)
        );
        assert_eq!(
            sample(
                &text,
                r#"msglog_log_append_duration_seconds_bucket{le="1e-05"}"#
            ),
            Some(1.0)
        );
        assert_eq!(
            sample(
                &text,
                r#"msglog_log_append_duration_seconds_bucket{le="+Inf"}"#
            ),
            Some(1.0)
        );
        assert_eq!(
            sample(&text, "msglog_log_append_duration_seconds_count"),
            Some(1.0)
        );
        assert!(
            !text.contains("log_sync_duration"),
            "no sync histogram without fsync"
        );
        assert!(
            text.contains("# TYPE msglog_messages_appended_total counter\n"),
            "{text}"
        );
        view.stats.appended(1, 5);
        let again = endpoint.metrics_text().unwrap();
        assert_eq!(sample(&again, "msglog_messages_appended_total"), Some(4.0));
    }

    #[test]
    fn with_fsync_the_sync_histogram_is_there() {
        let endpoint = Endpoint::new(view(true));
        let text = endpoint.metrics_text().unwrap();
        assert_eq!(
            sample(&text, "msglog_log_sync_duration_seconds_count"),
            Some(0.0)
        );
    }

    #[test]
    fn health_readiness_and_unknown_paths() {
        let view = view(false);
        let endpoint = Endpoint::new(view.clone());
        let get = |path| endpoint.respond(&Method::GET, path);
        assert_eq!(get("/healthz").status(), StatusCode::OK);
        assert_eq!(get("/readyz").status(), StatusCode::SERVICE_UNAVAILABLE);
        view.stats.set_accepting(true);
        let ready = get("/readyz");
        assert_eq!(ready.status(), StatusCode::OK);
        assert_eq!(body(ready), "ready\n");
        view.log.set_failing(true);
        let failing = get("/readyz");
        assert_eq!(failing.status(), StatusCode::SERVICE_UNAVAILABLE);
        assert!(body(failing).contains("appending to the log fails"));
        assert_eq!(get("/").status(), StatusCode::NOT_FOUND);
        assert_eq!(get("/metrics/").status(), StatusCode::NOT_FOUND);
        let post = endpoint.respond(&Method::POST, "/metrics");
        assert_eq!(post.status(), StatusCode::METHOD_NOT_ALLOWED);
        assert_eq!(post.headers()[ALLOW], "GET, HEAD");
        let metrics = get("/metrics");
        assert_eq!(
            metrics.headers()[CONTENT_TYPE],
            prometheus_text::CONTENT_TYPE
        );
        assert!(body(metrics).contains("msglog_ready 0\n"));
    }
}
