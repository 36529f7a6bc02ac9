//! The git adapter's network: git's smart HTTP protocol for libgit2, carried by reqwest over
//! rustls, the TLS stack every other adapter uses.
//!
//! libgit2's own HTTP transport links OpenSSL. Loaded and initialised, OpenSSL's two libraries
//! were about 4.5 MiB of tugboat's resident set at rest, for a second TLS stack beside rustls.
//! Here libgit2 still speaks the git protocol (ref advertisement, negotiation, packs, push
//! reports); this module only moves its bytes over HTTP(S), one request per protocol step, as
//! git's "stateless RPC" does:
//!
//! | libgit2 asks for | request                                              |
//! |------------------|------------------------------------------------------|
//! | upload-pack ls   | `GET  <url>/info/refs?service=git-upload-pack`       |
//! | upload-pack      | `POST <url>/git-upload-pack` (the request body)      |
//! | receive-pack ls  | `GET  <url>/info/refs?service=git-receive-pack`      |
//! | receive-pack     | `POST <url>/git-receive-pack` (commands and pack)    |
//!
//! The credentials go in an `Authorization` header (the token as the password of
//! `x-access-token`, as GitHub wants it), never in a URL; errors name the URL without them.
//! The token is asked for at every request (a rotated or renewed one is used at once), and a
//! request the server refuses with 401 is sent once more with a newer token, if there is one.
//! libgit2 calls the transport synchronously on the thread that fetches or pushes, so the
//! [`Session`] (client, token, runtime) is set for that thread by [`Session::run`].

use std::cell::RefCell;
use std::io::{self, Read, Write};
use std::sync::{Arc, Once};

use bytes::{Buf, Bytes};
use git2::transport::{Service, SmartSubtransport, SmartSubtransportStream, Transport};
use git2::{ErrorClass, ErrorCode};

use crate::credentials::Token;
use crate::ports::ErrorKind;

/// What one fetch or push talks to its server with.
#[derive(Clone)]
pub struct Session {
    pub http: reqwest::Client,
    /// Read for every request; a refused one is retried once with a newer token, if any.
    pub token: Arc<dyn Token>,
}

thread_local! {
    /// The session of the git operation running on this thread, if any.
    static CURRENT: RefCell<Option<(Session, tokio::runtime::Handle)>> = const { RefCell::new(None) };
}

/// Puts back the thread's previous session when an operation ends, also by a panic.
struct Restore(Option<(Session, tokio::runtime::Handle)>);

impl Drop for Restore {
    fn drop(&mut self) {
        let previous = self.0.take();
        CURRENT.with(|c| *c.borrow_mut() = previous);
    }
}

impl Session {
    /// Run `op` (git operations, on a blocking thread of the tokio runtime) with this session
    /// carrying the requests of its fetches and pushes. Outside a tokio runtime, a fetch or a
    /// push fails with an error that says so.
    pub fn run<T>(&self, op: impl FnOnce() -> T) -> T {
        register();
        let _restore = match tokio::runtime::Handle::try_current() {
            Ok(handle) => Restore(CURRENT.with(|c| c.replace(Some((self.clone(), handle))))),
            Err(_) => Restore(CURRENT.with(|c| c.replace(None))),
        };
        op()
    }
}

/// Put this module in charge of `http://` and `https://` remotes, once per process.
fn register() {
    static REGISTER: Once = Once::new();
    REGISTER.call_once(|| {
        for scheme in ["http", "https"] {
            // SAFETY: libgit2's transport registry is a global list that it reads, without a
            // lock, whenever a remote connects. `Once` runs this before the first remote
            // connects (every fetch and push goes through `Session::run`, which calls it
            // first), and blocks every other caller until it is done; nothing registers or
            // unregisters a transport anywhere else.
            #[allow(unsafe_code)]
            let registered = unsafe {
                git2::transport::register(scheme, |remote| {
                    Transport::smart(remote, true, Subtransport)
                })
            };
            if let Err(e) = registered {
                tracing::error!(scheme, error = %e, "cannot register tugboat's git transport");
            }
        }
    });
}

struct Subtransport;

impl SmartSubtransport for Subtransport {
    fn action(
        &self,
        url: &str,
        action: Service,
    ) -> Result<Box<dyn SmartSubtransportStream>, git2::Error> {
        let (session, handle) = CURRENT.with(|c| c.borrow().clone()).ok_or_else(|| {
            git2::Error::new(
                ErrorCode::GenericError,
                ErrorClass::Net,
                "a git remote was used outside of tugboat's git adapter, or outside a tokio runtime",
            )
        })?;
        let base = url.trim_end_matches('/');
        let (service, path) = match action {
            Service::UploadPackLs => ("git-upload-pack", "info/refs?service=git-upload-pack"),
            Service::ReceivePackLs => ("git-receive-pack", "info/refs?service=git-receive-pack"),
            Service::UploadPack => ("git-upload-pack", "git-upload-pack"),
            Service::ReceivePack => ("git-receive-pack", "git-receive-pack"),
        };
        let mut stream = Stream {
            session,
            handle,
            url: format!("{base}/{path}"),
            service,
            post: matches!(action, Service::UploadPack | Service::ReceivePack),
            body: Vec::new(),
            response: None,
            chunk: Bytes::new(),
        };
        if !stream.post {
            // The advertisement is asked for at once, so that a refusal is an error with its
            // own code (an authentication failure is not a network failure).
            stream.response = Some(stream.send()?);
        }
        Ok(Box::new(stream))
    }

    fn close(&self) -> Result<(), git2::Error> {
        Ok(())
    }
}

/// One request and its response: libgit2 writes the request body, then reads the response.
struct Stream {
    session: Session,
    handle: tokio::runtime::Handle,
    url: String,
    service: &'static str,
    post: bool,
    body: Vec<u8>,
    response: Option<reqwest::Response>,
    chunk: Bytes,
}

impl Stream {
    /// Send the request; when the server refuses the token, once more with a newer one.
    fn send(&mut self) -> Result<reqwest::Response, git2::Error> {
        let body = Bytes::from(std::mem::take(&mut self.body));
        let token = self
            .handle
            .block_on(self.session.token.token())
            .map_err(|e| {
                // No token to send: refused credentials (a revoked App key) are an
                // authentication failure; anything else (GitHub unreachable) is the network's.
                let code = if e.kind == ErrorKind::Denied {
                    ErrorCode::Auth
                } else {
                    ErrorCode::GenericError
                };
                git2::Error::new(code, ErrorClass::Net, e.message)
            })?;
        let response = self.request(&body, &token)?;
        if response.status() != reqwest::StatusCode::UNAUTHORIZED {
            check(&self.url, self.service, self.post, &response)?;
            return Ok(response);
        }
        let response = match self.handle.block_on(self.session.token.refused(&token)) {
            Some(newer) => self.request(&body, &newer)?,
            None => response,
        };
        check(&self.url, self.service, self.post, &response)?;
        Ok(response)
    }

    fn request(
        &self,
        body: &Bytes,
        token: &crate::secret::Secret,
    ) -> Result<reqwest::Response, git2::Error> {
        let http = &self.session.http;
        let request = if self.post {
            http.post(&self.url)
                .header(
                    "Content-Type",
                    format!("application/x-{}-request", self.service),
                )
                .header("Accept", format!("application/x-{}-result", self.service))
                .body(body.clone())
        } else {
            http.get(&self.url).header("Accept", "*/*")
        };
        let request = request.basic_auth("x-access-token", Some(token.expose()));
        self.handle
            .block_on(request.send())
            .map_err(|e| net_error(&self.url, &e))
    }
}

/// The URL without credentials or query, as errors and logs may show it.
fn shown(url: &str) -> String {
    match reqwest::Url::parse(url) {
        Ok(mut u) => {
            let _ = u.set_username("");
            let _ = u.set_password(None);
            u.set_query(None);
            u.to_string()
        }
        Err(_) => "(an unparsable URL)".to_owned(),
    }
}

fn net_error(url: &str, e: &reqwest::Error) -> git2::Error {
    let mut message = format!("git over HTTP to {}: {e}", shown(url));
    let mut source = std::error::Error::source(e);
    while let Some(s) = source {
        message.push_str(&format!(": {s}"));
        source = s.source();
    }
    git2::Error::new(ErrorCode::GenericError, ErrorClass::Net, message)
}

/// A response that does not carry what the git protocol step expects is an error that says
/// which: refused credentials, no repository, an HTTP failure, or a server that does not
/// speak git's smart HTTP protocol.
fn check(
    url: &str,
    service: &str,
    post: bool,
    response: &reqwest::Response,
) -> Result<(), git2::Error> {
    let status = response.status();
    let at = shown(url);
    let fail = |code, class, message: String| Err(git2::Error::new(code, class, message));
    match status.as_u16() {
        401 | 403 => {
            return fail(
                ErrorCode::Auth,
                ErrorClass::Http,
                format!("the git server refused the credentials (HTTP {status}) at {at}"),
            );
        }
        404 => {
            return fail(
                ErrorCode::NotFound,
                ErrorClass::Http,
                format!("no git repository at {at} (HTTP 404)"),
            );
        }
        200 => {}
        _ => {
            return fail(
                ErrorCode::GenericError,
                ErrorClass::Http,
                format!("HTTP {status} from the git server at {at}"),
            );
        }
    }
    let expected = if post {
        format!("application/x-{service}-result")
    } else {
        format!("application/x-{service}-advertisement")
    };
    let got = response
        .headers()
        .get("Content-Type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    if got.split(';').next().map(str::trim) != Some(expected.as_str()) {
        return fail(
            ErrorCode::GenericError,
            ErrorClass::Http,
            format!(
                "the server at {at} does not speak git's smart HTTP protocol: content type '{got}', expected '{expected}'"
            ),
        );
    }
    Ok(())
}

impl Write for Stream {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.body.extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl Read for Stream {
    fn read(&mut self, out: &mut [u8]) -> io::Result<usize> {
        if self.response.is_none() {
            let response = self
                .send()
                .map_err(|e| io::Error::other(e.message().to_owned()))?;
            self.response = Some(response);
        }
        while self.chunk.is_empty() {
            let Some(response) = self.response.as_mut() else {
                return Ok(0);
            };
            match self.handle.block_on(response.chunk()) {
                Ok(Some(chunk)) => self.chunk = chunk,
                Ok(None) => return Ok(0),
                Err(e) => {
                    return Err(io::Error::other(
                        net_error(&self.url, &e).message().to_owned(),
                    ));
                }
            }
        }
        let n = out.len().min(self.chunk.len());
        out[..n].copy_from_slice(&self.chunk[..n]);
        self.chunk.advance(n);
        Ok(n)
    }
}
