//! A lean HTTP/1.1 keep-alive client on hyper's connection API: one TCP
//! connection, one request at a time, the whole body read. Cheaper on CPU
//! than a full client (no pool, no cookie jar, no redirects), which matters
//! because the load generator shares the machine's cores with the server.

use std::net::SocketAddr;

use anyhow::Context;
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::client::conn::http1::{self, SendRequest};
use hyper::header::{AUTHORIZATION, CONTENT_TYPE, COOKIE, HOST, HeaderValue};
use hyper::{HeaderMap, Method, Request, StatusCode};
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;

/// One keep-alive connection to the server.
pub struct Conn {
    sender: SendRequest<Full<Bytes>>,
    host: HeaderValue,
}

/// A response, read to the end.
pub struct Reply {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: Bytes,
}

impl Reply {
    /// The `name=value` of the cookie `name` the response sets, if any.
    pub fn set_cookie(&self, name: &str) -> Option<String> {
        self.headers
            .get_all(hyper::header::SET_COOKIE)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .filter_map(|v| v.split(';').next())
            .find(|kv| kv.split_once('=').is_some_and(|(k, _)| k == name))
            .map(str::to_owned)
    }

    pub fn location(&self) -> Option<&str> {
        self.headers.get(hyper::header::LOCATION).and_then(|v| v.to_str().ok())
    }

    /// The body as text, for error messages.
    pub fn text(&self) -> String {
        let text = String::from_utf8_lossy(&self.body);
        text.chars().take(300).collect()
    }
}

impl Conn {
    pub async fn open(addr: SocketAddr) -> anyhow::Result<Self> {
        let stream = TcpStream::connect(addr)
            .await
            .with_context(|| format!("connecting to {addr}"))?;
        stream.set_nodelay(true)?;
        let (sender, connection) = http1::handshake(TokioIo::new(stream)).await?;
        tokio::spawn(async move {
            // Ends when the sender is dropped or the server closes.
            let _ = connection.await;
        });
        Ok(Self {
            sender,
            host: HeaderValue::from_str(&addr.to_string())?,
        })
    }

    /// Sends one request and reads the whole response.
    pub async fn send(&mut self, mut req: Request<Full<Bytes>>) -> anyhow::Result<Reply> {
        req.headers_mut().insert(HOST, self.host.clone());
        self.sender.ready().await?;
        let response = self.sender.send_request(req).await?;
        let (parts, body) = response.into_parts();
        let body = body.collect().await?.to_bytes();
        Ok(Reply {
            status: parts.status,
            headers: parts.headers,
            body,
        })
    }

    pub async fn get(&mut self, path_and_query: &str, cookie: Option<&HeaderValue>) -> anyhow::Result<Reply> {
        let mut req = Request::builder()
            .method(Method::GET)
            .uri(path_and_query)
            .body(Full::new(Bytes::new()))?;
        if let Some(cookie) = cookie {
            req.headers_mut().insert(COOKIE, cookie.clone());
        }
        self.send(req).await
    }

    /// POSTs a form body, with `Authorization` and `Cookie` if given.
    pub async fn post_form(
        &mut self,
        path: &str,
        authorization: Option<&HeaderValue>,
        cookie: Option<&HeaderValue>,
        body: Bytes,
    ) -> anyhow::Result<Reply> {
        let mut req = Request::builder()
            .method(Method::POST)
            .uri(path)
            .body(Full::new(body))?;
        let headers = req.headers_mut();
        headers.insert(
            CONTENT_TYPE,
            HeaderValue::from_static("application/x-www-form-urlencoded"),
        );
        if let Some(auth) = authorization {
            headers.insert(AUTHORIZATION, auth.clone());
        }
        if let Some(cookie) = cookie {
            headers.insert(COOKIE, cookie.clone());
        }
        self.send(req).await
    }
}

impl Conn {
    /// POSTs a JSON body with `Authorization`.
    pub async fn post_json(&mut self, path: &str, authorization: &HeaderValue, body: Bytes) -> anyhow::Result<Reply> {
        let mut req = Request::builder()
            .method(Method::POST)
            .uri(path)
            .body(Full::new(body))?;
        let headers = req.headers_mut();
        headers.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
        headers.insert(AUTHORIZATION, authorization.clone());
        self.send(req).await
    }
}

/// A form body from pairs, URL-encoded.
pub fn form(pairs: &[(&str, &str)]) -> Bytes {
    let mut s = url::form_urlencoded::Serializer::new(String::new());
    for (k, v) in pairs {
        s.append_pair(k, v);
    }
    Bytes::from(s.finish())
}

/// `Authorization: Basic` for a client (RFC 6749 §2.3.1: id and secret
/// form-urlencoded first).
pub fn basic(id: &str, secret: &str) -> anyhow::Result<HeaderValue> {
    use base64::Engine;
    let enc = |s: &str| url::form_urlencoded::byte_serialize(s.as_bytes()).collect::<String>();
    let raw = format!("{}:{}", enc(id), enc(secret));
    let value = format!("Basic {}", base64::engine::general_purpose::STANDARD.encode(raw));
    Ok(HeaderValue::from_str(&value)?)
}
