//! A fault-injecting reverse proxy for the soak: it stands between tugboat and one stand-in
//! (GitHub with its git endpoints, Argo CD, or AWS) and, at the rates it is set to, delays a
//! request, answers it with a 5xx before or after passing it on (so that a write may have
//! happened although the client saw it fail, as behind a real load balancer), cuts the
//! connection mid-answer, holds a request past any client's patience, or answers as GitHub
//! does when a secondary rate limit is hit. Which fault a request meets is drawn from a
//! seeded generator: a run replays with its seed (as far as the scheduler lets it).
//!
//! GitHub's secondary rate limit, as GitHub documents it ("Rate limits for the REST API",
//! docs.github.com): a 403 or 429 with a `retry-after` header and a message naming the
//! secondary rate limit. A cut connection is a body that fails after the head was sent: the
//! client reads a truncated answer, as after a TCP reset.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{HeaderName, StatusCode};
use axum::response::{IntoResponse, Response};

/// How often each fault is drawn, per request (0 to 1); all zero passes everything on.
#[derive(Debug, Clone, Default)]
pub struct Rates {
    /// A pause of 100 ms to 2 s before the request is passed on.
    pub latency: f64,
    /// A 502 or 503 instead of passing the request on.
    pub error_before: f64,
    /// A 502 after the upstream handled the request (a write happened; the client saw none).
    pub error_after: f64,
    /// The answer's connection cut after its head.
    pub reset: f64,
    /// Held for 35 s, past every client's read timeout, then cut.
    pub timeout: f64,
    /// GitHub's secondary rate limit (only where the upstream is GitHub's REST API).
    pub secondary_rate_limit: f64,
    /// Only requests whose path and query contain this meet a fault (`git-receive-pack`: a
    /// push's discovery and its pack).
    pub path: Option<String>,
}

/// One proxy's state: where it passes requests on, its rates, and what it did.
pub struct Chaos {
    system: &'static str,
    upstream: String,
    http: reqwest::Client,
    rates: Mutex<Rates>,
    rng: Mutex<u64>,
    injected: Mutex<BTreeMap<String, u64>>,
}

/// The fault a request met.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Fault {
    None,
    Latency(Duration),
    ErrorBefore,
    ErrorAfter,
    Reset,
    Timeout,
    SecondaryRateLimit,
}

impl Fault {
    fn kind(self) -> &'static str {
        match self {
            Fault::None => "none",
            Fault::Latency(_) => "latency",
            Fault::ErrorBefore => "5xx",
            Fault::ErrorAfter => "5xx-after-write",
            Fault::Reset => "connection reset",
            Fault::Timeout => "timeout",
            Fault::SecondaryRateLimit => "secondary rate limit",
        }
    }
}

/// splitmix64: a small, well-mixed generator, enough to draw faults reproducibly.
pub fn next(state: &mut u64) -> u64 {
    *state = state.wrapping_add(0x9E37_79B9_7F4A_7C15);
    let mut z = *state;
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// A draw in [0, 1).
pub fn unit(state: &mut u64) -> f64 {
    (next(state) >> 11) as f64 / (1u64 << 53) as f64
}

impl Chaos {
    /// A proxy named `system` in front of `upstream`, passing everything on until told
    /// otherwise; `seed` draws its faults.
    pub fn new(system: &'static str, upstream: &str, seed: u64) -> Arc<Self> {
        let http = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .unwrap_or_default();
        Arc::new(Self {
            system,
            upstream: upstream.trim_end_matches('/').to_owned(),
            http,
            rates: Mutex::new(Rates::default()),
            rng: Mutex::new(seed),
            injected: Mutex::default(),
        })
    }

    /// Serve on a loopback port chosen by the OS; returns its URL.
    pub async fn start(self: &Arc<Self>) -> std::io::Result<(String, tokio::task::JoinHandle<()>)> {
        let router = axum::Router::new()
            .fallback(pass)
            .with_state(Arc::clone(self));
        super::serve(router, std::net::SocketAddr::from(([127, 0, 0, 1], 0))).await
    }

    /// Set the rates from now on.
    pub fn set(&self, rates: Rates) {
        *lock(&self.rates) = rates;
    }

    /// The faults injected so far, by `system: kind`.
    pub fn injected(&self) -> BTreeMap<String, u64> {
        lock(&self.injected).clone()
    }

    fn draw(&self) -> Fault {
        let rates = lock(&self.rates).clone();
        let mut rng = lock(&self.rng);
        let mut roll = unit(&mut rng);
        let choices = [
            (rates.timeout, Fault::Timeout),
            (rates.reset, Fault::Reset),
            (rates.error_before, Fault::ErrorBefore),
            (rates.error_after, Fault::ErrorAfter),
            (rates.secondary_rate_limit, Fault::SecondaryRateLimit),
        ];
        for (rate, fault) in choices {
            if roll < rate {
                return fault;
            }
            roll -= rate;
        }
        if roll < rates.latency {
            let ms = 100 + next(&mut rng) % 1900;
            return Fault::Latency(Duration::from_millis(ms));
        }
        Fault::None
    }

    fn count(&self, fault: Fault) {
        if fault != Fault::None {
            let key = format!("{}: {}", self.system, fault.kind());
            *lock(&self.injected).entry(key).or_default() += 1;
        }
    }

    /// Pass `req` on to the upstream; the answer as it came, or a 502 naming why not.
    async fn forward(&self, req: Request) -> Response {
        let (parts, body) = req.into_parts();
        let Ok(bytes) = axum::body::to_bytes(body, 256 * 1024 * 1024).await else {
            return (StatusCode::BAD_REQUEST, "chaos: unreadable body").into_response();
        };
        let path = parts.uri.path_and_query().map_or("/", |p| p.as_str());
        let mut out = self
            .http
            .request(parts.method, format!("{}{path}", self.upstream))
            .body(bytes);
        for (name, value) in &parts.headers {
            if name != "host" && name != "content-length" {
                out = out.header(name, value);
            }
        }
        let answer = match out.send().await {
            Ok(a) => a,
            Err(e) => {
                return (StatusCode::BAD_GATEWAY, format!("chaos: upstream: {e}")).into_response();
            }
        };
        let status = answer.status();
        let headers = answer.headers().clone();
        let body = answer.bytes().await.unwrap_or_default();
        let mut response = Response::new(Body::from(body));
        *response.status_mut() = status;
        for (name, value) in &headers {
            let skip: [HeaderName; 2] = [
                axum::http::header::TRANSFER_ENCODING,
                axum::http::header::CONNECTION,
            ];
            if !skip.contains(name) {
                response.headers_mut().append(name, value.clone());
            }
        }
        response
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// A body whose head was sent and whose bytes end in an error: hyper cuts the connection.
fn cut() -> Response {
    let failing = futures_util::stream::once(async {
        Err::<bytes::Bytes, std::io::Error>(std::io::Error::new(
            std::io::ErrorKind::ConnectionReset,
            "chaos: connection reset",
        ))
    });
    let mut r = Response::new(Body::from_stream(failing));
    r.headers_mut().insert(
        axum::http::header::CONTENT_TYPE,
        axum::http::HeaderValue::from_static("application/json"),
    );
    r
}

async fn pass(State(chaos): State<Arc<Chaos>>, req: Request) -> Response {
    let aimed = lock(&chaos.rates).path.as_ref().is_none_or(|p| {
        let target = req.uri().path_and_query().map_or("", |t| t.as_str());
        target.contains(p.as_str())
    });
    let mut fault = if aimed { chaos.draw() } else { Fault::None };
    // GitHub's secondary limits are its REST API's; a git transfer or another system is
    // passed on as is.
    let rest = chaos.system == "github" && !req.uri().path().starts_with("/git/");
    if fault == Fault::SecondaryRateLimit && !rest {
        fault = Fault::None;
    }
    chaos.count(fault);
    match fault {
        Fault::None => chaos.forward(req).await,
        Fault::Latency(d) => {
            tokio::time::sleep(d).await;
            chaos.forward(req).await
        }
        Fault::ErrorBefore => (
            StatusCode::SERVICE_UNAVAILABLE,
            "chaos: service unavailable",
        )
            .into_response(),
        Fault::ErrorAfter => {
            let _ = chaos.forward(req).await;
            (StatusCode::BAD_GATEWAY, "chaos: bad gateway").into_response()
        }
        Fault::Reset => {
            let _ = chaos.forward(req).await;
            cut()
        }
        Fault::Timeout => {
            tokio::time::sleep(Duration::from_secs(35)).await;
            cut()
        }
        Fault::SecondaryRateLimit => {
            let body = serde_json::json!({
                "message": "You have exceeded a secondary rate limit. Please wait a few minutes before you try again. If you reach out to GitHub Support for help, please include the request ID.",
                "documentation_url": "https://docs.github.com/rest/overview/rate-limits-for-the-rest-api#about-secondary-rate-limits",
            });
            let mut r = (StatusCode::FORBIDDEN, axum::Json(body)).into_response();
            r.headers_mut()
                .insert("retry-after", axum::http::HeaderValue::from_static("1"));
            r
        }
    }
}
