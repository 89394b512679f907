//! A real SMTP server for the tests: it speaks enough SMTP for lettre's
//! client, keeps every message, and lets a test wait for one.

#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use std::sync::{Arc, Mutex};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpListener;

#[derive(Clone, Debug)]
pub struct Mail {
    pub to: Vec<String>,
    pub subject: String,
    pub body: String,
}

impl Mail {
    /// The first six-digit code in the subject or the body.
    pub fn code(&self) -> String {
        let text = format!("{} {}", self.subject, self.body);
        let bytes = text.as_bytes();
        (0..bytes.len().saturating_sub(5))
            .find(|&i| {
                bytes[i..i + 6].iter().all(u8::is_ascii_digit)
                    && (i == 0 || !bytes[i - 1].is_ascii_digit())
                    && bytes.get(i + 6).is_none_or(|b| !b.is_ascii_digit())
            })
            .map(|i| text[i..i + 6].to_owned())
            .expect("a six-digit code in the mail")
    }

    /// The first link whose path contains `path`.
    pub fn link(&self, path: &str) -> String {
        self.body
            .split_whitespace()
            .find(|w| w.starts_with("http") && w.contains(path))
            .unwrap_or_else(|| panic!("a link to {path} in: {}", self.body))
            .to_owned()
    }
}

#[derive(Clone)]
pub struct SmtpSink {
    port: u16,
    mails: Arc<Mutex<Vec<Mail>>>,
}

impl SmtpSink {
    pub async fn start() -> SmtpSink {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind smtp");
        let port = listener.local_addr().expect("addr").port();
        let mails = Arc::new(Mutex::new(Vec::new()));
        let store = mails.clone();
        tokio::spawn(async move {
            while let Ok((socket, _)) = listener.accept().await {
                let store = store.clone();
                tokio::spawn(async move {
                    let _ = session(socket, store).await;
                });
            }
        });
        SmtpSink { port, mails }
    }

    pub fn url(&self) -> String {
        format!("smtp://127.0.0.1:{}", self.port)
    }

    pub fn all(&self) -> Vec<Mail> {
        self.mails.lock().unwrap().clone()
    }

    pub fn to(&self, address: &str) -> Vec<Mail> {
        self.all()
            .into_iter()
            .filter(|m| m.to.iter().any(|t| t == address))
            .collect()
    }

    /// Waits (ten seconds at most) for a mail to `address` that `matches`.
    pub async fn wait_for(&self, address: &str, matches: impl Fn(&Mail) -> bool) -> Mail {
        super::eventually(&format!("a mail to {address}"), || {
            let found = self.to(address).into_iter().rev().find(|m| matches(m));
            async move { found }
        })
        .await
    }
}

async fn session(socket: tokio::net::TcpStream, store: Arc<Mutex<Vec<Mail>>>) -> std::io::Result<()> {
    let (read, mut write) = socket.into_split();
    let mut lines = BufReader::new(read).lines();
    write.write_all(b"220 sink ESMTP\r\n").await?;
    let mut to = Vec::new();
    while let Some(line) = lines.next_line().await? {
        let upper = line.to_ascii_uppercase();
        if upper.starts_with("EHLO") || upper.starts_with("HELO") {
            write.write_all(b"250 sink\r\n").await?;
        } else if upper.starts_with("MAIL FROM") {
            to.clear();
            write.write_all(b"250 OK\r\n").await?;
        } else if upper.starts_with("RCPT TO") {
            let addr = line.split(['<', '>']).nth(1).unwrap_or_default().to_owned();
            to.push(addr);
            write.write_all(b"250 OK\r\n").await?;
        } else if upper == "DATA" {
            write.write_all(b"354 go ahead\r\n").await?;
            let mut data = Vec::new();
            while let Some(l) = lines.next_line().await? {
                if l == "." {
                    break;
                }
                data.push(l.strip_prefix('.').map(str::to_owned).unwrap_or(l));
            }
            store.lock().unwrap().push(parse(to.clone(), &data));
            write.write_all(b"250 queued\r\n").await?;
        } else if upper == "QUIT" {
            write.write_all(b"221 bye\r\n").await?;
            return Ok(());
        } else {
            write.write_all(b"250 OK\r\n").await?;
        }
    }
    Ok(())
}

/// Headers, then the body, decoding quoted-printable if the mail uses it.
fn parse(to: Vec<String>, lines: &[String]) -> Mail {
    let split = lines.iter().position(|l| l.is_empty()).unwrap_or(lines.len());
    let headers = &lines[..split];
    let header = |name: &str| {
        headers
            .iter()
            .find_map(|h| {
                h.split_once(':')
                    .filter(|(k, _)| k.eq_ignore_ascii_case(name))
                    .map(|(_, v)| v.trim().to_owned())
            })
            .unwrap_or_default()
    };
    let raw_body = lines.get(split + 1..).unwrap_or_default().join("\n");
    let body = if header("Content-Transfer-Encoding").eq_ignore_ascii_case("quoted-printable") {
        decode_qp(&raw_body)
    } else {
        raw_body
    };
    Mail {
        to,
        subject: header("Subject"),
        body,
    }
}

fn decode_qp(text: &str) -> String {
    let joined = text.replace("=\n", "");
    let bytes = joined.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = joined.get(i + 1..i + 3).unwrap_or("");
        if bytes[i] == b'='
            && let Ok(b) = u8::from_str_radix(hex, 16)
        {
            out.push(b);
            i += 3;
            continue;
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}
