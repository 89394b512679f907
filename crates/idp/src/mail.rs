//! Outgoing mail: SMTP through lettre when `GATEHOUSE_SMTP_URL` is set, else
//! `.eml` files in a folder (the data directory's `mail/`). Mail text comes
//! from templates in `templates/mail/`.
//!
//! Sending happens in a background task so that a response takes the same
//! time whether or not a mail was sent (no enumeration by timing).

use askama::Template;
use lettre::message::{Mailbox, header::ContentType};
use lettre::{AsyncFileTransport, AsyncSmtpTransport, AsyncTransport, Message, Tokio1Executor};
use std::path::PathBuf;

use gatehouse_core::Email;

#[derive(Debug, thiserror::Error)]
pub enum MailError {
    #[error("bad SMTP URL: {0}")]
    BadUrl(String),
    #[error("cannot create mail folder {0}: {1}")]
    Folder(PathBuf, std::io::Error),
}

#[derive(Clone)]
enum Transport {
    Smtp(AsyncSmtpTransport<Tokio1Executor>),
    Folder(AsyncFileTransport<Tokio1Executor>),
}

#[derive(Clone)]
pub struct Mailer {
    transport: Transport,
    from: Mailbox,
}

/// One rendered mail.
pub struct Mail {
    pub subject: String,
    pub body: String,
}

impl Mailer {
    /// `smtp://host:port` (plain SMTP, for a relay on a trusted network or a
    /// local sink).
    pub fn smtp(url: &str, from: Mailbox) -> Result<Self, MailError> {
        let parsed = url::Url::parse(url).map_err(|e| MailError::BadUrl(e.to_string()))?;
        if parsed.scheme() != "smtp" {
            return Err(MailError::BadUrl(format!(
                "scheme must be smtp, not {}",
                parsed.scheme()
            )));
        }
        let host = parsed.host_str().ok_or_else(|| MailError::BadUrl("no host".into()))?;
        let transport = AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous(host)
            .port(parsed.port().unwrap_or(25))
            .build();
        Ok(Self {
            transport: Transport::Smtp(transport),
            from,
        })
    }

    /// Writes each mail as a `.eml` file into `dir`, creating it.
    pub fn folder(dir: PathBuf, from: Mailbox) -> Result<Self, MailError> {
        std::fs::create_dir_all(&dir).map_err(|e| MailError::Folder(dir.clone(), e))?;
        Ok(Self {
            transport: Transport::Folder(AsyncFileTransport::new(dir)),
            from,
        })
    }

    /// Queues a mail; delivery failures are logged, never shown to the
    /// requester.
    pub fn send(&self, to: &Email, mail: Mail) {
        let this = self.clone();
        let to = to.clone();
        tokio::spawn(async move {
            if let Err(e) = this.deliver(&to, mail).await {
                tracing::error!(error = %e, "mail delivery failed");
            }
        });
    }

    async fn deliver(&self, to: &Email, mail: Mail) -> Result<(), String> {
        let to: Mailbox = to
            .as_str()
            .parse()
            .map_err(|e: lettre::address::AddressError| e.to_string())?;
        let message = Message::builder()
            .from(self.from.clone())
            .to(to)
            .subject(mail.subject)
            .header(ContentType::TEXT_PLAIN)
            .body(mail.body)
            .map_err(|e| e.to_string())?;
        match &self.transport {
            Transport::Smtp(t) => t.send(message).await.map(|_| ()).map_err(|e| e.to_string()),
            Transport::Folder(t) => t.send(message).await.map(|_| ()).map_err(|e| e.to_string()),
        }
    }
}

/// Renders a mail template; the first line of the output is the subject.
pub fn render(template: &impl Template) -> Mail {
    let text = template.render().unwrap_or_else(|e| {
        tracing::error!(error = %e, "mail template failed");
        "Gatehouse\n\nThis message could not be rendered.".to_owned()
    });
    let (subject, body) = text.split_once('\n').unwrap_or((text.as_str(), ""));
    Mail {
        subject: subject.trim().to_owned(),
        body: body.trim_start().to_owned(),
    }
}

/// The mails we send. Each template's first line is its subject.
pub mod templates {
    use askama::Template;

    #[derive(Template)]
    #[template(path = "mail/verify.txt")]
    pub struct Verify<'a> {
        pub code: &'a str,
        pub link: &'a str,
    }

    #[derive(Template)]
    #[template(path = "mail/already_registered.txt")]
    pub struct AlreadyRegistered<'a> {
        pub login_link: &'a str,
        pub reset_link: &'a str,
    }

    #[derive(Template)]
    #[template(path = "mail/reset.txt")]
    pub struct Reset<'a> {
        pub link: &'a str,
    }

    #[derive(Template)]
    #[template(path = "mail/change_email.txt")]
    pub struct ChangeEmail<'a> {
        pub code: &'a str,
        pub link: &'a str,
    }

    #[derive(Template)]
    #[template(path = "mail/email_changed.txt")]
    pub struct EmailChanged<'a> {
        pub new_email: &'a str,
        pub reset_link: &'a str,
    }

    #[derive(Template)]
    #[template(path = "mail/password_changed.txt")]
    pub struct PasswordChanged<'a> {
        pub reset_link: &'a str,
    }
}
