//! One elected writer for the nodes of a log: the node whose listener session holds an advisory lock takes the
//! batches of every other node, so that all of them go into its groups instead of each node's writer taking the
//! head row's lock in turn (measured in docs/benchmarks.md: on one machine, 1.3× the events a second with two
//! nodes). Election only routes: the head row's lock still orders every group, so two nodes that both write, for
//! the moment a hand-over takes or for ever, are still correct, only slower.
//!
//! - A node that is given an address (`--advertise`) tries the lock at every listener round; the one that holds
//!   it records itself in `log_writer` (node, address, the session's pid). The lock goes with that session: a node
//!   stopped, killed or cut off loses it, and another takes it within a poll.
//! - The other nodes read `log_writer` at every round, and trust its address only while the recorded pid holds
//!   the lock (`pg_locks`): a row left by a dead writer sends nothing anywhere.
//! - A node hands a batch on as the events' JSON over HTTP (`POST /internal/v1/append`, with a secret only the
//!   holders of the log's signing key can make); the writer appends it with its own writer and answers with the
//!   receipts or the refusal. When the batch could not be handed on, or no answer came, the node writes it itself:
//!   ids make that safe whether or not the writer took it too.
//! - Hand-overs are taken together: the batches that arrive while `HANDOVERS_IN_FLIGHT` exchanges are under way
//!   go in the next one, each still all or nothing and answered on its own, so that under load the writer parses
//!   one request for many clients' (each exchange costs both nodes about what a client's request does).

use crate::{db, Shared};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{OnceLock, RwLock};
use std::time::Duration;
use store::{AppendAnswer, AppendError, AppendOutcome, AppendRequest, StoreError};
use tokio::sync::{mpsc, oneshot};

/// The advisory lock of the writer's role (the periodic signer's is the one before it).
const WRITER_LOCK: i64 = 7_238_402_921;

/// How long a node waits for the writer's answer before writing the batch itself.
const FORWARD_ANSWER: Duration = Duration::from_secs(5);

/// Exchanges with the writer under way at once; the batches that arrive meanwhile wait for the next one.
const HANDOVERS_IN_FLIGHT: usize = 4;

/// The most one exchange carries: batches, and bytes of their JSON (the writer takes 64 MiB).
const HANDOVER_BATCHES_MAX: usize = 512;
const HANDOVER_BYTES_MAX: usize = 16 << 20;

/// A batch waiting to be handed on: where, with which secret, its JSON, and who waits for the writer's answer
/// (`None`: no answer; the node writes the batch itself).
struct Handover {
    address: String,
    secret: String,
    body: String,
    answer: oneshot::Sender<Option<AppendAnswer>>,
}

/// This node's part in the election.
pub(crate) struct Election {
    /// Given by `elect`: where this node is reached (`None`: it writes its own batches and never takes the role),
    /// and the secret a forwarded batch carries. Nothing is elected before.
    joined: RwLock<Option<(Option<String>, String)>>,
    /// Whether this node's listener session holds the writer's lock.
    pub writer: AtomicBool,
    /// The elected writer's address, while it is another node.
    elsewhere: RwLock<Option<String>>,
    client: reqwest::Client,
    /// The hand-over task's queue, started with the first batch handed on.
    handovers: OnceLock<mpsc::UnboundedSender<Handover>>,
}

impl Election {
    pub fn new() -> Election {
        Election {
            joined: RwLock::new(None),
            writer: AtomicBool::new(false),
            elsewhere: RwLock::new(None),
            client: reqwest::Client::builder()
                .connect_timeout(Duration::from_secs(1))
                .timeout(FORWARD_ANSWER)
                .build()
                .expect("an HTTP client without TLS builds"),
            handovers: OnceLock::new(),
        }
    }

    /// Queues a batch for the hand-over task (started here, on the log's runtime, the first time).
    fn hand_over(&self, handover: Handover) {
        let queue = self.handovers.get_or_init(|| {
            let (tx, rx) = mpsc::unbounded_channel();
            tokio::spawn(hand_overs(self.client.clone(), rx));
            tx
        });
        // The task ends only with the runtime; a batch it cannot take is written here (its answer dropped).
        let _ = queue.send(handover);
    }

    pub fn join(&self, address: Option<String>, secret: String) {
        *self.joined.write().expect("not poisoned") = Some((address, secret));
    }

    /// Whether the elected writer is another node.
    pub fn elsewhere(&self) -> bool {
        self.elsewhere.read().expect("not poisoned").is_some()
    }

    /// Where to hand a batch, and the secret it carries: `None` when this node writes it.
    fn target(&self) -> Option<(String, String)> {
        let elsewhere = self.elsewhere.read().expect("not poisoned").clone()?;
        let joined = self.joined.read().expect("not poisoned");
        let (_, secret) = joined.as_ref()?;
        Some((elsewhere, secret.clone()))
    }

    /// The listener session ended: its lock with it.
    pub fn lost_session(&self) {
        self.writer.store(false, Ordering::SeqCst);
        *self.elsewhere.write().expect("not poisoned") = None;
    }

    /// One round of the election on the listener's session: take the role if it is free, or learn who holds it.
    pub async fn round(
        &self,
        client: &tokio_postgres::Client,
        node: &str,
    ) -> Result<(), StoreError> {
        let address = match &*self.joined.read().expect("not poisoned") {
            None => return Ok(()),
            Some((address, _)) => address.clone(),
        };
        let Some(address) = address else {
            *self.elsewhere.write().expect("not poisoned") = None;
            return Ok(());
        };
        if self.writer.load(Ordering::SeqCst) {
            return Ok(());
        }
        let took: bool = client
            .query_one("SELECT pg_try_advisory_lock($1)", &[&WRITER_LOCK])
            .await
            .map_err(db)?
            .get(0);
        if took {
            client
                .execute(
                    "INSERT INTO log_writer (id, node, address, pid, since) \
                     VALUES (1, $1, $2, pg_backend_pid(), now()) ON CONFLICT (id) DO UPDATE \
                     SET node = excluded.node, address = excluded.address, pid = excluded.pid, since = excluded.since",
                    &[&node, &address],
                )
                .await
                .map_err(db)?;
            self.writer.store(true, Ordering::SeqCst);
            *self.elsewhere.write().expect("not poisoned") = None;
            tracing::info!(
                address,
                "this node is the log's writer: the other nodes hand it their batches"
            );
            return Ok(());
        }
        // The recorded writer, while its session holds the lock (a bigint key shows as its two halves).
        let row = client
            .query_opt(
                &format!(
                    "SELECT w.address FROM log_writer w WHERE w.id = 1 AND EXISTS (SELECT 1 FROM pg_locks l \
                     WHERE l.locktype = 'advisory' AND l.granted AND l.pid = w.pid AND l.objsubid = 1 \
                     AND l.classid::int8 = {} AND l.objid::int8 = {})",
                    WRITER_LOCK >> 32,
                    WRITER_LOCK & 0xffff_ffff
                ),
                &[],
            )
            .await
            .map_err(db)?;
        let elsewhere = row.map(|r| r.get::<_, String>(0)).filter(|a| *a != address);
        let mut current = self.elsewhere.write().expect("not poisoned");
        if *current != elsewhere {
            tracing::info!(writer = ?elsewhere, "the log's writer changed");
            *current = elsewhere;
        }
        Ok(())
    }
}

/// What a batch is handed on as: the events as a sender would post them, and the credential's name. `None` for a
/// batch this node must write itself (a restore carries stored fields, and an adapter's event may carry a source of
/// its own: a sender's form has no place for either).
fn body(request: &AppendRequest) -> Option<String> {
    if request
        .events
        .iter()
        .any(|s| s.stored.is_some() || s.source.is_some())
    {
        return None;
    }
    let events: Vec<String> = request
        .events
        .iter()
        .map(|s| s.event.to_json(s.expected_version))
        .collect();
    Some(format!(
        r#"{{"source":{},"events":[{}]}}"#,
        serde_json::to_string(&request.source).ok()?,
        events.join(",")
    ))
}

/// The hand-over task: takes what is queued when an exchange may start (at most `HANDOVERS_IN_FLIGHT` at once)
/// and hands it on in one exchange, all to one writer address (a batch for another starts the next exchange).
async fn hand_overs(client: reqwest::Client, mut queue: mpsc::UnboundedReceiver<Handover>) {
    let slots = std::sync::Arc::new(tokio::sync::Semaphore::new(HANDOVERS_IN_FLIGHT));
    let mut carried = None;
    loop {
        let Ok(slot) = slots.clone().acquire_owned().await else {
            return;
        };
        let Some(first) = (match carried.take() {
            Some(first) => Some(first),
            None => queue.recv().await,
        }) else {
            return;
        };
        let mut bytes = first.body.len();
        let mut taken = vec![first];
        while taken.len() < HANDOVER_BATCHES_MAX && bytes < HANDOVER_BYTES_MAX {
            let Ok(next) = queue.try_recv() else { break };
            if next.address != taken[0].address {
                // The writer changed under the queue.
                carried = Some(next);
                break;
            }
            bytes += next.body.len();
            taken.push(next);
        }
        let client = client.clone();
        tokio::spawn(async move {
            exchange(&client, taken).await;
            drop(slot);
        });
    }
}

/// One exchange with the writer: `{"requests": [batch, …]}`, answered by one answer per batch, in order.
async fn exchange(client: &reqwest::Client, taken: Vec<Handover>) {
    let (address, secret) = (taken[0].address.clone(), taken[0].secret.clone());
    let mut body =
        String::with_capacity(taken.iter().map(|h| h.body.len() + 1).sum::<usize>() + 16);
    body.push_str(r#"{"requests":["#);
    for (i, h) in taken.iter().enumerate() {
        if i > 0 {
            body.push(',');
        }
        body.push_str(&h.body);
    }
    body.push_str("]}");
    let sent = client
        .post(format!("{address}/internal/v1/append"))
        .bearer_auth(secret)
        .header("content-type", "application/json")
        .body(body)
        .send()
        .await;
    let answers = match sent {
        Ok(r) if r.status().as_u16() == 200 => match r.json::<Vec<AppendAnswer>>().await {
            Ok(answers) if answers.len() == taken.len() => Some(answers),
            Ok(answers) => {
                tracing::warn!(
                    address,
                    sent = taken.len(),
                    answered = answers.len(),
                    "the writer answered another number of batches; writing them here"
                );
                None
            }
            Err(e) => {
                tracing::warn!(error = %e, address, "the writer's answer did not arrive whole; writing the batches here");
                None
            }
        },
        Ok(r) => {
            tracing::warn!(status = %r.status(), address, "the writer did not take the batches; writing them here");
            None
        }
        Err(e) => {
            tracing::warn!(error = %e, address, "the writer did not answer; writing the batches here");
            None
        }
    };
    let mut answers = answers.map(Vec::into_iter);
    for h in taken {
        let _ = h.answer.send(answers.as_mut().and_then(Iterator::next));
    }
}

impl Shared {
    /// Hands `request` to the elected writer when that is another node: its answer, or `Err(request)` back when
    /// this node is to write it (no writer elsewhere, nothing delivered, or no answer in time).
    pub(crate) async fn forward(
        &self,
        request: AppendRequest,
    ) -> Result<Result<AppendOutcome, AppendError>, AppendRequest> {
        let Some((address, secret)) = self.election.target() else {
            return Err(request);
        };
        let Some(body) = body(&request) else {
            return Err(request);
        };
        let (answer, answered) = oneshot::channel();
        self.election.hand_over(Handover {
            address,
            secret,
            body,
            answer,
        });
        let Ok(Some(answer)) = answered.await else {
            return Err(request);
        };
        Ok(match answer {
            AppendAnswer::Outcome(outcome) => {
                // Read your writes on this node too: its head reaches what the writer acknowledged (the
                // notification comes within milliseconds; the wait is bounded, the receipts stand anyway).
                if let Some(last) = outcome.receipts.iter().map(|r| r.position).max() {
                    let mut head = self.head.subscribe();
                    let _ = tokio::time::timeout(FORWARD_ANSWER, head.wait_for(|h| h.size >= last))
                        .await;
                }
                Ok(outcome)
            }
            AppendAnswer::Error(e) => Err(e),
        })
    }
}
