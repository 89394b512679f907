//! The outbox delivery worker, once for every service: it claims due
//! messages from a [`Queue`] (leased, so a worker that dies mid-delivery
//! leaves them to another after the lease), hands each to a [`Deliver`]
//! (concurrently, each within a timeout), and records the outcome: done,
//! or failed and due again after an exponential backoff with jitter
//! ([`gatehouse_core::backoff`]), or dead once the next attempt would come
//! later than the message's maximum age. Between rounds it sleeps for the
//! poll interval unless the queue's [`Notify`] wakes it (a message was
//! just written).
//!
//! The services' queues and deliveries are thin: what their store calls
//! are, what a message is sent as. The queue's hooks (housekeeping now and
//! then, metrics) default to nothing.

use std::fmt::Display;
use std::sync::Arc;
use std::time::Duration;

use gatehouse_core::Timestamp;
use gatehouse_core::backoff::backoff_secs;
use rand::Rng;
use tokio::sync::Notify;
use tokio::task::JoinHandle;

/// How a worker runs.
#[derive(Clone, Debug)]
pub struct Settings {
    /// Names the worker in log lines (`outbox`, `pay outbox`).
    pub name: &'static str,
    /// How often it looks for due messages when nothing wakes it.
    pub poll_interval: Duration,
    /// How long one delivery may take.
    pub delivery_timeout: Duration,
    /// How long a claim lasts, in seconds.
    pub lease_secs: i64,
    /// How many messages one round claims.
    pub batch: i64,
    /// How old a message may get (seconds after it was written) before it
    /// is given up.
    pub max_age_secs: i64,
}

/// What the worker needs to know of a message.
#[derive(Clone, Copy, Debug)]
pub struct About<'a> {
    pub id: &'a str,
    /// Whom it goes to, for the log (a client id, a merchant).
    pub recipient: &'a str,
    /// Attempts made before this one.
    pub attempts: i64,
    pub created_at: Timestamp,
}

/// How an attempt was recorded.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Outcome {
    Delivered,
    /// Failed; tried again later.
    Failed,
    /// Failed, and given up.
    Dead,
}

impl Outcome {
    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Delivered => "delivered",
            Outcome::Failed => "failed",
            Outcome::Dead => "dead",
        }
    }
}

/// A durable queue of outgoing messages: a service's outbox table.
#[async_trait::async_trait]
pub trait Queue: Send + Sync + 'static {
    type Message: Send + Sync + 'static;
    type Error: Display + Send;

    /// The messages due at `now`, at most `batch`, leased for `lease_secs`.
    async fn claim(&self, now: Timestamp, batch: i64, lease_secs: i64) -> Result<Vec<Self::Message>, Self::Error>;
    /// The message was accepted.
    async fn delivered(&self, message: &Self::Message, now: Timestamp) -> Result<(), Self::Error>;
    /// The attempt failed with `error`; try again at `next`, unless `dead`.
    async fn failed(
        &self,
        message: &Self::Message,
        now: Timestamp,
        next: Timestamp,
        error: &str,
        dead: bool,
    ) -> Result<(), Self::Error>;
    /// What the worker needs to know of `message`.
    fn about<'a>(&self, message: &'a Self::Message) -> About<'a>;
    /// What wakes the worker before its poll interval is up.
    fn notify(&self) -> &Notify;

    /// At the start of every round (counting from 0): housekeeping.
    async fn round_started(&self, _round: u64) {}
    /// After a round that claimed `claimed` messages (more than none) was
    /// delivered.
    async fn batch_done(&self, _claimed: usize) {}
    /// After a round that claimed nothing, the `idle_rounds`th in a row
    /// (from 1).
    async fn idle(&self, _idle_rounds: u32) {}
    /// An attempt was recorded.
    fn recorded(&self, _outcome: Outcome) {}
}

/// Sends one message: `Err` says why it was not accepted.
#[async_trait::async_trait]
pub trait Deliver<M>: Send + Sync + 'static {
    async fn deliver(&self, message: &M) -> Result<(), String>;
}

/// The HTTP client deliveries go through: `timeout` for the whole
/// exchange, and no redirects followed (a receiver's URL is exactly the
/// one registered).
pub fn http_client(timeout: Duration) -> Result<reqwest::Client, reqwest::Error> {
    reqwest::Client::builder()
        .timeout(timeout)
        .redirect(reqwest::redirect::Policy::none())
        .build()
}

/// POSTs `body` as `content_type` to `uri`: a 2xx is delivered, anything
/// else says why not (`HTTP 503`, `request failed: ...`).
pub async fn post(http: &reqwest::Client, uri: &str, content_type: &str, body: String) -> Result<(), String> {
    let result = http
        .post(uri)
        .header(reqwest::header::CONTENT_TYPE, content_type)
        .body(body)
        .send()
        .await;
    match result {
        Ok(r) if r.status().is_success() => Ok(()),
        Ok(r) => Err(format!("HTTP {}", r.status().as_u16())),
        Err(e) => Err(format!("request failed: {e}")),
    }
}

/// Starts the worker; it runs until the handle is aborted.
pub fn spawn<Q: Queue, D: Deliver<Q::Message>>(queue: Arc<Q>, deliver: Arc<D>, settings: Settings) -> JoinHandle<()> {
    tokio::spawn(async move {
        let mut round: u64 = 0;
        let mut idle_rounds: u32 = 0;
        loop {
            queue.round_started(round).await;
            round = round.wrapping_add(1);
            let claimed = match run_once(&queue, &deliver, &settings).await {
                Ok(n) => n,
                Err(e) => {
                    tracing::warn!(error = %e, "{}: cannot claim messages", settings.name);
                    0
                }
            };
            if claimed > 0 {
                idle_rounds = 0;
                continue;
            }
            idle_rounds = idle_rounds.wrapping_add(1);
            queue.idle(idle_rounds).await;
            let wake = queue.notify().notified();
            tokio::select! {
                () = wake => {},
                () = tokio::time::sleep(settings.poll_interval) => {},
            }
        }
    })
}

/// Claims due messages and tries each once, concurrently; returns how many
/// were claimed.
pub async fn run_once<Q: Queue, D: Deliver<Q::Message>>(
    queue: &Arc<Q>,
    deliver: &Arc<D>,
    settings: &Settings,
) -> Result<usize, Q::Error> {
    let claimed = queue
        .claim(Timestamp::now(), settings.batch, settings.lease_secs)
        .await?;
    let n = claimed.len();
    let mut tasks = tokio::task::JoinSet::new();
    for message in claimed {
        let (queue, deliver, settings) = (queue.clone(), deliver.clone(), settings.clone());
        tasks.spawn(async move { attempt(queue.as_ref(), deliver.as_ref(), &settings, message).await });
    }
    while let Some(done) = tasks.join_next().await {
        if let Err(e) = done {
            tracing::warn!(error = %e, "{}: delivery task failed", settings.name);
        }
    }
    if n > 0 {
        queue.batch_done(n).await;
    }
    Ok(n)
}

/// One attempt at `message`, recorded.
async fn attempt<Q: Queue, D: Deliver<Q::Message>>(queue: &Q, deliver: &D, settings: &Settings, message: Q::Message) {
    let result = match tokio::time::timeout(settings.delivery_timeout, deliver.deliver(&message)).await {
        Ok(result) => result,
        Err(_) => Err("timed out".to_owned()),
    };
    let about = queue.about(&message);
    let now = Timestamp::now();
    let outcome = match result {
        Ok(()) => queue.delivered(&message, now).await.map(|()| Outcome::Delivered),
        Err(error) => {
            let next = now.plus(backoff_secs(about.attempts, rand::thread_rng().gen_range(0.0..0.5)));
            let dead = next.0 > about.created_at.0.saturating_add(settings.max_age_secs);
            tracing::info!(id = %about.id, to = %about.recipient, %error, dead, "{}: delivery failed", settings.name);
            queue
                .failed(&message, now, next, &error, dead)
                .await
                .map(|()| if dead { Outcome::Dead } else { Outcome::Failed })
        }
    };
    match outcome {
        Ok(outcome) => queue.recorded(outcome),
        Err(e) => tracing::warn!(id = %about.id, error = %e, "{}: cannot record the attempt", settings.name),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;
    use std::sync::Mutex;

    /// A message in memory.
    #[derive(Clone, Debug)]
    struct Message {
        id: String,
        attempts: i64,
        created_at: Timestamp,
        due: Timestamp,
        done: bool,
        dead: bool,
        last_error: Option<String>,
    }

    #[derive(Default)]
    struct MemoryQueue {
        messages: Mutex<HashMap<String, Message>>,
        outcomes: Mutex<Vec<Outcome>>,
        notify: Notify,
    }

    impl MemoryQueue {
        fn push(&self, id: &str, created_at: Timestamp) {
            let message = Message {
                id: id.to_owned(),
                attempts: 0,
                created_at,
                due: created_at,
                done: false,
                dead: false,
                last_error: None,
            };
            self.messages.lock().expect("lock").insert(id.to_owned(), message);
        }

        fn get(&self, id: &str) -> Message {
            self.messages.lock().expect("lock")[id].clone()
        }

        /// Makes every waiting message due now (time passing).
        fn all_due(&self) {
            for m in self.messages.lock().expect("lock").values_mut() {
                m.due = Timestamp(0);
            }
        }
    }

    #[async_trait::async_trait]
    impl Queue for MemoryQueue {
        type Message = Message;
        type Error = String;

        async fn claim(&self, now: Timestamp, batch: i64, lease_secs: i64) -> Result<Vec<Message>, String> {
            let mut messages = self.messages.lock().expect("lock");
            let mut due: Vec<Message> = Vec::new();
            for m in messages.values_mut() {
                if !m.done && !m.dead && m.due <= now && due.len() < usize::try_from(batch).unwrap_or(0) {
                    m.due = now.plus(lease_secs);
                    due.push(m.clone());
                }
            }
            Ok(due)
        }

        async fn delivered(&self, message: &Message, _now: Timestamp) -> Result<(), String> {
            let mut messages = self.messages.lock().expect("lock");
            let m = messages.get_mut(&message.id).ok_or("gone")?;
            m.attempts += 1;
            m.done = true;
            Ok(())
        }

        async fn failed(
            &self,
            message: &Message,
            _now: Timestamp,
            next: Timestamp,
            error: &str,
            dead: bool,
        ) -> Result<(), String> {
            let mut messages = self.messages.lock().expect("lock");
            let m = messages.get_mut(&message.id).ok_or("gone")?;
            m.attempts += 1;
            m.due = next;
            m.dead = dead;
            m.last_error = Some(error.to_owned());
            Ok(())
        }

        fn about<'a>(&self, message: &'a Message) -> About<'a> {
            About {
                id: &message.id,
                recipient: "test",
                attempts: message.attempts,
                created_at: message.created_at,
            }
        }

        fn notify(&self) -> &Notify {
            &self.notify
        }

        fn recorded(&self, outcome: Outcome) {
            self.outcomes.lock().expect("lock").push(outcome);
        }
    }

    /// Accepts the messages whose id is in `accept`; says "HTTP 503" to the
    /// others.
    struct Receiver {
        accept: Mutex<Vec<String>>,
        seen: Mutex<Vec<String>>,
    }

    impl Receiver {
        fn accepting(ids: &[&str]) -> Arc<Self> {
            Arc::new(Self {
                accept: Mutex::new(ids.iter().map(|s| (*s).to_owned()).collect()),
                seen: Mutex::new(Vec::new()),
            })
        }
    }

    #[async_trait::async_trait]
    impl Deliver<Message> for Receiver {
        async fn deliver(&self, message: &Message) -> Result<(), String> {
            self.seen.lock().expect("lock").push(message.id.clone());
            if self.accept.lock().expect("lock").contains(&message.id) {
                Ok(())
            } else {
                Err("HTTP 503".to_owned())
            }
        }
    }

    fn settings() -> Settings {
        Settings {
            name: "test outbox",
            poll_interval: Duration::from_millis(10),
            delivery_timeout: Duration::from_secs(5),
            lease_secs: 30,
            batch: 32,
            max_age_secs: 24 * 60 * 60,
        }
    }

    #[tokio::test]
    async fn due_messages_are_delivered_once() {
        let queue = Arc::new(MemoryQueue::default());
        queue.push("a", Timestamp::now());
        queue.push("b", Timestamp::now());
        let receiver = Receiver::accepting(&["a", "b"]);
        assert_eq!(run_once(&queue, &receiver, &settings()).await, Ok(2));
        assert!(queue.get("a").done && queue.get("b").done);
        assert_eq!(run_once(&queue, &receiver, &settings()).await, Ok(0), "nothing left");
        assert_eq!(receiver.seen.lock().expect("lock").len(), 2);
        assert_eq!(*queue.outcomes.lock().expect("lock"), [Outcome::Delivered; 2]);
    }

    #[tokio::test]
    async fn a_failure_is_retried_with_backoff_until_accepted() {
        let queue = Arc::new(MemoryQueue::default());
        queue.push("a", Timestamp::now());
        let receiver = Receiver::accepting(&[]);
        let mut waits = Vec::new();
        for attempt in 0..4 {
            let before = Timestamp::now();
            assert_eq!(run_once(&queue, &receiver, &settings()).await, Ok(1));
            let m = queue.get("a");
            assert_eq!(m.attempts, attempt + 1);
            assert_eq!(m.last_error.as_deref(), Some("HTTP 503"));
            assert!(!m.dead && !m.done);
            // Not due again until the backoff is over.
            assert_eq!(run_once(&queue, &receiver, &settings()).await, Ok(0));
            waits.push(m.due.0 - before.0);
            queue.all_due();
        }
        // 1, 2, 4, 8 s, each stretched by up to half (and a second of clock).
        for (attempt, wait) in waits.iter().enumerate() {
            let base = 1_i64 << attempt;
            assert!(
                (base..=base + base / 2 + 2).contains(wait),
                "attempt {attempt}: {wait} s"
            );
        }
        receiver.accept.lock().expect("lock").push("a".to_owned());
        assert_eq!(run_once(&queue, &receiver, &settings()).await, Ok(1));
        assert!(queue.get("a").done);
        assert_eq!(
            *queue.outcomes.lock().expect("lock"),
            [
                Outcome::Failed,
                Outcome::Failed,
                Outcome::Failed,
                Outcome::Failed,
                Outcome::Delivered
            ]
        );
    }

    #[tokio::test]
    async fn a_message_too_old_is_given_up() {
        let queue = Arc::new(MemoryQueue::default());
        let max_age = settings().max_age_secs;
        queue.push("young", Timestamp::now());
        queue.push("old", Timestamp::now().minus(max_age));
        let receiver = Receiver::accepting(&[]);
        assert_eq!(run_once(&queue, &receiver, &settings()).await, Ok(2));
        assert!(
            queue.get("old").dead,
            "its next attempt would come after its maximum age"
        );
        assert!(!queue.get("young").dead);
        queue.all_due();
        assert_eq!(
            run_once(&queue, &receiver, &settings()).await,
            Ok(1),
            "only the young one"
        );
    }

    struct Slow;

    #[async_trait::async_trait]
    impl Deliver<Message> for Slow {
        async fn deliver(&self, _message: &Message) -> Result<(), String> {
            tokio::time::sleep(Duration::from_secs(60)).await;
            Ok(())
        }
    }

    #[tokio::test]
    async fn a_delivery_that_takes_too_long_fails() {
        let queue = Arc::new(MemoryQueue::default());
        queue.push("a", Timestamp::now());
        let quick = Settings {
            delivery_timeout: Duration::from_millis(20),
            ..settings()
        };
        assert_eq!(run_once(&queue, &Arc::new(Slow), &quick).await, Ok(1));
        assert_eq!(queue.get("a").last_error.as_deref(), Some("timed out"));
    }

    #[tokio::test]
    async fn the_worker_delivers_what_is_written_after_a_wake() {
        let queue = Arc::new(MemoryQueue::default());
        let receiver = Receiver::accepting(&["a"]);
        let worker = spawn(
            queue.clone(),
            receiver.clone(),
            Settings {
                poll_interval: Duration::from_secs(3600),
                ..settings()
            },
        );
        // Written after it started; the poll interval is an hour, so only
        // the wake-up gets it delivered.
        queue.push("a", Timestamp::now());
        queue.notify().notify_one();
        let deadline = std::time::Instant::now() + Duration::from_secs(5);
        while !queue.get("a").done {
            assert!(std::time::Instant::now() < deadline, "not delivered");
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        worker.abort();
    }
}
