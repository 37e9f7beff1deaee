//! The queue between the runs being logged and a background thread that sends to the MLflow
//! server, so that logging never waits on the network.
//!
//! Runs, records, artifacts and status updates are queued in order. The thread sends them
//! (records in batches within MLflow's limits, [`super::batch`]); while the server is
//! unreachable it retries the exact same request with exponential back-off
//! ([`super::backoff`]), printing one warning when the server goes away and one line when it is
//! back. Metrics carry the time they were logged, so a retry of a batch the server had already
//! stored adds nothing: MLflow's SQL store skips a metric whose (key, timestamp, step, value)
//! the run already has, keeps a param logged again with the same value, and overwrites tags. A
//! request the server refuses (HTTP 4xx) is reported once with MLflow's message and dropped.

use super::backoff::Backoff;
use super::batch::{Batch, Record};
use super::client::{ApiError, Client, RunInfo};
use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant};

/// Longest wait between retries once the runs are ending (see [`Sender::close`]).
const CLOSING_CAP: Duration = Duration::from_secs(2);

/// A run of this process, by the order it was created in.
pub type RunHandle = usize;

/// The experiment of a new run.
#[derive(Debug, Clone, PartialEq)]
pub enum Experiment {
    /// By name, created when missing.
    Name(String),
    /// By id.
    Id(String),
}

/// A run to create on the server.
#[derive(Debug, Clone)]
pub struct NewRun {
    /// Its experiment.
    pub experiment: Experiment,
    /// Its name (`mlflow.runName`).
    pub name: String,
    /// Its tags.
    pub tags: Vec<(String, String)>,
    /// A run whose child it is (the tag `mlflow.parentRunId`).
    pub parent: Option<RunHandle>,
}

enum Op {
    Create {
        run: RunHandle,
        new: NewRun,
        start_time: i64,
    },
    Log {
        run: RunHandle,
        record: Record,
    },
    Artifact {
        run: RunHandle,
        name: String,
        bytes: Arc<Vec<u8>>,
    },
    End {
        run: RunHandle,
        status: &'static str,
        /// `None` when reopening a run: its old end time stays until it ends again.
        end_time: Option<i64>,
    },
}

impl Op {
    fn run(&self) -> RunHandle {
        match self {
            Op::Create { run, .. } | Op::Log { run, .. } | Op::Artifact { run, .. } | Op::End { run, .. } => *run,
        }
    }
}

/// One request (or, to create a run, a few), with the run ids it needs.
enum Work {
    Create {
        run: RunHandle,
        new: NewRun,
        parent_id: Option<String>,
        start_time: i64,
    },
    Logs {
        run: RunHandle,
        run_id: String,
        batch: Batch,
    },
    Artifact {
        run: RunHandle,
        artifact_uri: String,
        name: String,
        bytes: Arc<Vec<u8>>,
    },
    End {
        run: RunHandle,
        run_id: String,
        status: &'static str,
        end_time: Option<i64>,
    },
}

impl Work {
    fn run(&self) -> RunHandle {
        match self {
            Work::Create { run, .. } | Work::Logs { run, .. } | Work::Artifact { run, .. } | Work::End { run, .. } => {
                *run
            }
        }
    }
}

#[derive(Default)]
struct Slot {
    name: String,
    id: Option<String>,
    experiment_id: Option<String>,
    artifact_uri: Option<String>,
    /// Its creation was refused: its records are dropped.
    refused: bool,
    /// Requests of the run the server refused (the first is reported, the rest counted).
    refusals: usize,
}

#[derive(Default)]
struct State {
    queue: VecDeque<Op>,
    runs: Vec<Slot>,
    /// What the thread is sending now (`None`: idle).
    in_flight: Option<String>,
    closing: bool,
    stop: bool,
    down: bool,
}

struct Shared {
    state: Mutex<State>,
    changed: Condvar,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// Where the sender's warnings go (stderr, or a test's list).
pub type Report = Arc<dyn Fn(&str) + Send + Sync>;

/// Sends runs to one MLflow server from a background thread; cheap to clone.
#[derive(Clone)]
pub struct Sender {
    shared: Arc<Shared>,
    url: String,
    report: Report,
}

/// Milliseconds since the epoch.
pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

impl Sender {
    /// Starts the sending thread; warnings go to stderr.
    pub fn start(client: Client) -> std::io::Result<Self> {
        Self::start_reporting(client, Arc::new(|line: &str| eprintln!("{line}")))
    }

    /// Starts the sending thread; warnings go to `report`.
    pub fn start_reporting(client: Client, report: Report) -> std::io::Result<Self> {
        let shared = Arc::new(Shared {
            state: Mutex::new(State::default()),
            changed: Condvar::new(),
        });
        let url = client.base().to_string();
        let (thread_shared, thread_report) = (shared.clone(), report.clone());
        std::thread::Builder::new()
            .name("ode-mlflow".into())
            .spawn(move || serve(&thread_shared, &client, &*thread_report))?;
        Ok(Self { shared, url, report })
    }

    fn push(&self, op: Op) {
        self.shared.lock().queue.push_back(op);
        self.shared.changed.notify_all();
    }

    /// Queues the creation of a run, started now.
    pub fn create_run(&self, new: NewRun) -> RunHandle {
        let mut st = self.shared.lock();
        let run = st.runs.len();
        st.runs.push(Slot {
            name: new.name.clone(),
            ..Slot::default()
        });
        st.queue.push_back(Op::Create {
            run,
            new,
            start_time: now_ms(),
        });
        drop(st);
        self.shared.changed.notify_all();
        run
    }

    /// A run that exists on the server already (a study's parent run, or the run `ode train
    /// --resume` continues). Artifacts are uploaded only where its artifact root is given.
    pub fn known_run(&self, name: &str, run_id: &str, experiment_id: &str, artifact_uri: Option<&str>) -> RunHandle {
        let mut st = self.shared.lock();
        st.runs.push(Slot {
            name: name.into(),
            id: Some(run_id.into()),
            experiment_id: Some(experiment_id.into()),
            artifact_uri: artifact_uri.map(String::from),
            ..Slot::default()
        });
        st.runs.len() - 1
    }

    /// Queues setting `run` back to `RUNNING` (a known run that this process goes on with).
    pub fn reopen(&self, run: RunHandle) {
        self.push(Op::End {
            run,
            status: "RUNNING",
            end_time: None,
        });
    }

    /// Queues a param, metric or tag of `run`.
    pub fn log(&self, run: RunHandle, record: Record) {
        self.push(Op::Log { run, record });
    }

    /// Queues an artifact of `run`.
    pub fn artifact(&self, run: RunHandle, name: &str, bytes: Vec<u8>) {
        self.push(Op::Artifact {
            run,
            name: name.into(),
            bytes: Arc::new(bytes),
        });
    }

    /// Queues the end of `run` with `status` (`FINISHED`, `FAILED`, `KILLED`), now.
    pub fn end(&self, run: RunHandle, status: &'static str) {
        self.push(Op::End {
            run,
            status,
            end_time: Some(now_ms()),
        });
    }

    /// The artifact root of `run`, once the server has created it (or as given to
    /// [`Sender::known_run`]).
    pub fn artifact_uri(&self, run: RunHandle) -> Option<String> {
        self.shared.lock().runs[run].artifact_uri.clone()
    }

    /// The server's id of `run` and its experiment's, waiting up to `wait` for it to be created.
    pub fn run_id(&self, run: RunHandle, wait: Duration) -> Option<(String, String)> {
        let deadline = Instant::now() + wait;
        let mut st = self.shared.lock();
        loop {
            let slot = &st.runs[run];
            if let (Some(id), Some(exp)) = (&slot.id, &slot.experiment_id) {
                return Some((id.clone(), exp.clone()));
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if slot.refused || left.is_zero() {
                return None;
            }
            st = self
                .shared
                .changed
                .wait_timeout(st, left)
                .map_or_else(|e| e.into_inner().0, |r| r.0);
        }
    }

    /// Waits up to `timeout` for everything queued to be sent, then stops the thread; prints
    /// what was left unsent if it gives up.
    pub fn close(&self, timeout: Duration) {
        let deadline = Instant::now() + timeout;
        let mut st = self.shared.lock();
        st.closing = true;
        self.shared.changed.notify_all();
        while !st.queue.is_empty() || st.in_flight.is_some() {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                break;
            }
            st = self
                .shared
                .changed
                .wait_timeout(st, left)
                .map_or_else(|e| e.into_inner().0, |r| r.0);
        }
        let unsent = unsent(&st);
        let refused: Vec<String> = st
            .runs
            .iter()
            .filter(|r| r.refusals > 1)
            .map(|r| format!("{} of run '{}'", r.refusals - 1, r.name))
            .collect();
        st.stop = true;
        drop(st);
        self.shared.changed.notify_all();
        if !refused.is_empty() {
            (self.report)(&format!(
                "warning: MLflow at {} refused further requests, dropped as well: {}",
                self.url,
                refused.join(", ")
            ));
        }
        if let Some(unsent) = unsent {
            (self.report)(&format!(
                "warning: MLflow at {}: gave up after waiting {:.0} s; not sent: {unsent} (metrics.jsonl has every \
                 param and metric)",
                self.url,
                timeout.as_secs_f64()
            ));
        }
    }
}

/// What is still queued or being sent, in words; `None` when nothing is.
fn unsent(st: &State) -> Option<String> {
    let mut counts: [(usize, &str, &str); 6] = [
        (0, "run creation", "run creations"),
        (0, "param", "params"),
        (0, "metric", "metrics"),
        (0, "tag", "tags"),
        (0, "artifact", "artifacts"),
        (0, "run status update", "run status updates"),
    ];
    for op in &st.queue {
        let i = match op {
            Op::Create { .. } => 0,
            Op::Log { record, .. } => match record {
                Record::Param { .. } => 1,
                Record::Metric { .. } => 2,
                Record::Tag { .. } => 3,
            },
            Op::Artifact { .. } => 4,
            Op::End { .. } => 5,
        };
        counts[i].0 += 1;
    }
    let mut parts: Vec<String> = counts
        .iter()
        .filter(|(n, ..)| *n > 0)
        .map(|(n, one, many)| format!("{n} {}", if *n == 1 { one } else { many }))
        .collect();
    if let Some(w) = &st.in_flight {
        parts.push(format!("{w} being sent"));
    }
    (!parts.is_empty()).then(|| parts.join(", "))
}

/// The next request to send: the queue's first op, or for a record the first batch of that
/// run's records (taken from anywhere in the queue up to that run's next other op, so each
/// run's order is kept). Drops the ops of runs the server refused to create.
fn next_work(st: &mut State) -> Option<(Work, String)> {
    loop {
        let op = st.queue.pop_front()?;
        let run = op.run();
        if st.runs[run].refused {
            continue;
        }
        let slot = &st.runs[run];
        let name = slot.name.clone();
        let (id, uri) = (slot.id.clone().unwrap_or_default(), slot.artifact_uri.clone());
        return Some(match op {
            Op::Create { run, new, start_time } => {
                let parent_id = new.parent.and_then(|p| st.runs[p].id.clone());
                (
                    Work::Create {
                        run,
                        new,
                        parent_id,
                        start_time,
                    },
                    format!("the creation of run '{name}'"),
                )
            }
            Op::Log { record, .. } => {
                let batch = gather(&mut st.queue, run, record);
                let what = format!("{} of run '{name}'", batch.describe());
                (Work::Logs { run, run_id: id, batch }, what)
            }
            Op::Artifact { name: file, bytes, .. } => match uri {
                Some(artifact_uri) => (
                    Work::Artifact {
                        run,
                        artifact_uri,
                        name: file.clone(),
                        bytes,
                    },
                    format!("artifact {file} of run '{name}'"),
                ),
                // A known run (another process's) has no artifact root here: not ours to fill.
                None => continue,
            },
            Op::End { status, end_time, .. } => (
                Work::End {
                    run,
                    run_id: id,
                    status,
                    end_time,
                },
                format!("the status of run '{name}'"),
            ),
        });
    }
}

/// A batch of `run`'s records: `first`, then the queue's next records of `run` that fit, up to
/// `run`'s next op that is not a record; everything else stays in order.
fn gather(queue: &mut VecDeque<Op>, run: RunHandle, first: Record) -> Batch {
    let mut batch = Batch::default();
    if let Err(r) = batch.try_push(first) {
        // Cannot happen for an empty batch; keep the record rather than lose it.
        queue.push_front(Op::Log { run, record: r });
        return batch;
    }
    let mut rest = VecDeque::with_capacity(queue.len());
    let mut open = true;
    for op in queue.drain(..) {
        match op {
            Op::Log { run: r, record } if open && r == run => {
                if let Err(record) = batch.try_push(record) {
                    open = false;
                    rest.push_back(Op::Log { run, record });
                }
            }
            op => {
                if op.run() == run {
                    open = false;
                }
                rest.push_back(op);
            }
        }
    }
    *queue = rest;
    batch
}

/// Sends `work`; for a new run, its id, artifact root and experiment.
fn execute(
    client: &Client,
    experiments: &mut HashMap<String, String>,
    work: &Work,
) -> Result<Option<(RunInfo, String)>, ApiError> {
    match work {
        Work::Create {
            new,
            parent_id,
            start_time,
            ..
        } => {
            let experiment_id = match &new.experiment {
                Experiment::Id(id) => id.clone(),
                Experiment::Name(name) => match experiments.get(name) {
                    Some(id) => id.clone(),
                    None => {
                        let id = client.experiment_id(name)?;
                        experiments.insert(name.clone(), id.clone());
                        id
                    }
                },
            };
            let mut tags = new.tags.clone();
            tags.push(("mlflow.runName".into(), new.name.clone()));
            if let Some(p) = parent_id {
                tags.push(("mlflow.parentRunId".into(), p.clone()));
            }
            let info = client.create_run(&experiment_id, &new.name, *start_time, &tags)?;
            Ok(Some((info, experiment_id)))
        }
        Work::Logs { run_id, batch, .. } => client.log_batch(run_id, batch).map(|_| None),
        Work::Artifact {
            artifact_uri,
            name,
            bytes,
            ..
        } => client.upload_artifact(artifact_uri, name, bytes).map(|_| None),
        Work::End {
            run_id,
            status,
            end_time,
            ..
        } => client.update_run(run_id, status, *end_time).map(|_| None),
    }
}

/// The sending thread: takes work in order and sends it, retrying what the server could not
/// take with back-off, until [`Sender::close`] stops it.
fn serve(shared: &Shared, client: &Client, report: &(dyn Fn(&str) + Send + Sync)) {
    let url = client.base().to_string();
    let mut backoff = Backoff::default();
    let mut experiments = HashMap::new();
    loop {
        let mut st = shared.lock();
        let (work, what) = loop {
            if st.stop {
                return;
            }
            if let Some(w) = next_work(&mut st) {
                break w;
            }
            shared.changed.notify_all();
            st = shared.changed.wait(st).unwrap_or_else(|e| e.into_inner());
        };
        st.in_flight = Some(what.clone());
        drop(st);
        loop {
            let result = execute(client, &mut experiments, &work);
            let mut st = shared.lock();
            if let Err(ApiError::Unreachable(why)) = &result {
                if !st.down {
                    st.down = true;
                    report(&format!(
                        "warning: MLflow at {url} unreachable ({why}); retrying in the background (training goes \
                         on; metrics.jsonl or the study store keeps everything)"
                    ));
                }
                let wait = backoff.failed(if st.closing { CLOSING_CAP } else { super::backoff::CAP });
                if !sleep(shared, st, wait) {
                    return;
                }
                continue;
            }
            backoff.succeeded();
            if st.down {
                st.down = false;
                report(&format!("MLflow at {url} is reachable again; sending what was queued"));
            }
            match (result, &work) {
                (Ok(Some((info, exp))), Work::Create { run, .. }) => {
                    let slot = &mut st.runs[*run];
                    slot.id = Some(info.run_id);
                    slot.artifact_uri = Some(info.artifact_uri);
                    slot.experiment_id = Some(exp);
                }
                (Err(e), w) => {
                    let slot = &mut st.runs[w.run()];
                    slot.refusals += 1;
                    let dropped = match w {
                        Work::Create { .. } => "; nothing of this run is sent",
                        _ => "; dropped",
                    };
                    slot.refused |= matches!(w, Work::Create { .. });
                    // Once per run: a run the server stopped taking (e.g. deleted) refuses the rest too.
                    if slot.refusals == 1 {
                        report(&format!(
                            "warning: MLflow at {url} refused {what}: {e}{dropped} (metrics.jsonl has every param and \
                             metric)"
                        ));
                    }
                }
                _ => {}
            }
            st.in_flight = None;
            drop(st);
            shared.changed.notify_all();
            break;
        }
    }
}

/// Waits `wait` (shortened to [`CLOSING_CAP`] once closing); false when the thread must stop.
fn sleep(shared: &Shared, mut st: MutexGuard<'_, State>, wait: Duration) -> bool {
    let start = Instant::now();
    loop {
        if st.stop {
            return false;
        }
        let limit = if st.closing { wait.min(CLOSING_CAP) } else { wait };
        let left = limit.saturating_sub(start.elapsed());
        if left.is_zero() {
            return true;
        }
        st = shared
            .changed
            .wait_timeout(st, left)
            .map_or_else(|e| e.into_inner().0, |r| r.0);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{BufRead, BufReader, Read, Write};
    use std::net::TcpListener;

    type Seen = Arc<Mutex<Vec<(String, String)>>>;

    /// A stand-in for the server: answers the calls the sender makes, `runs/log-batch` with
    /// `log_batch` in turn (then 200); records each request's method and path, and body.
    fn fake_server(log_batch: Vec<(u16, &'static str)>) -> (String, Seen) {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let seen: Seen = Arc::default();
        let answers = Arc::new(Mutex::new(VecDeque::from(log_batch)));
        let thread_seen = seen.clone();
        std::thread::spawn(move || {
            for stream in listener.incoming().flatten() {
                let (seen, answers) = (thread_seen.clone(), answers.clone());
                std::thread::spawn(move || {
                    let mut reader = BufReader::new(stream.try_clone().unwrap());
                    let mut stream = stream;
                    loop {
                        let mut request = String::new();
                        if reader.read_line(&mut request).unwrap_or(0) == 0 {
                            return;
                        }
                        let mut length = 0;
                        loop {
                            let mut h = String::new();
                            reader.read_line(&mut h).unwrap();
                            if h.trim().is_empty() {
                                break;
                            }
                            if let Some((k, v)) = h.split_once(':')
                                && k.eq_ignore_ascii_case("content-length")
                            {
                                length = v.trim().parse().unwrap();
                            }
                        }
                        let mut body = vec![0; length];
                        reader.read_exact(&mut body).unwrap();
                        let line: Vec<&str> = request.split_whitespace().collect();
                        let what = format!("{} {}", line[0], line[1].split('?').next().unwrap());
                        let (status, answer) = if what.ends_with("get-by-name") {
                            (200, r#"{"experiment": {"experiment_id": "7"}}"#)
                        } else if what.ends_with("runs/create") {
                            (
                                200,
                                r#"{"run": {"info": {"run_id": "r1", "artifact_uri": "mlflow-artifacts:/7/r1/artifacts"}}}"#,
                            )
                        } else if what.ends_with("log-batch") {
                            answers.lock().unwrap().pop_front().unwrap_or((200, "{}"))
                        } else {
                            (200, "{}")
                        };
                        seen.lock()
                            .unwrap()
                            .push((what, String::from_utf8_lossy(&body).into_owned()));
                        let _ = write!(
                            stream,
                            "HTTP/1.1 {status} X\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{answer}",
                            answer.len()
                        );
                    }
                });
            }
        });
        (url, seen)
    }

    /// Logs a param, an artifact, a metric and the end of a run through a sender to `url`;
    /// returns the lines it reported.
    fn log_a_run(url: &str) -> Vec<String> {
        let lines: Arc<Mutex<Vec<String>>> = Arc::default();
        let sink = lines.clone();
        let sender = Sender::start_reporting(
            Client::new(url),
            Arc::new(move |l: &str| sink.lock().unwrap().push(l.into())),
        )
        .unwrap();
        let run = sender.create_run(NewRun {
            experiment: Experiment::Name("e".into()),
            name: "r".into(),
            tags: vec![],
            parent: None,
        });
        sender.log(
            run,
            Record::Param {
                key: "a".into(),
                value: "1".into(),
            },
        );
        sender.artifact(run, "f.txt", b"hello".to_vec());
        sender.log(
            run,
            Record::Metric {
                key: "m".into(),
                value: 0.5,
                timestamp: 10,
                step: 1,
            },
        );
        sender.end(run, "FINISHED");
        sender.close(Duration::from_secs(20));
        lines.lock().unwrap().clone()
    }

    fn paths(seen: &Seen) -> Vec<String> {
        seen.lock().unwrap().iter().map(|(p, _)| p.clone()).collect()
    }

    #[test]
    fn a_refused_batch_is_reported_once_and_dropped_not_retried() {
        let (url, seen) = fake_server(vec![(
            400,
            r#"{"error_code": "INVALID_PARAMETER_VALUE", "message": "Changing param values is not allowed"}"#,
        )]);
        let lines = log_a_run(&url);
        assert_eq!(
            paths(&seen),
            [
                "GET /api/2.0/mlflow/experiments/get-by-name",
                "POST /api/2.0/mlflow/runs/create",
                "POST /api/2.0/mlflow/runs/log-batch",
                "PUT /api/2.0/mlflow-artifacts/artifacts/7/r1/artifacts/f.txt",
                "POST /api/2.0/mlflow/runs/log-batch",
                "POST /api/2.0/mlflow/runs/update",
            ]
        );
        assert_eq!(lines.len(), 1, "{lines:?}");
        assert!(
            lines[0].contains("refused 1 param of run 'r'")
                && lines[0].contains("INVALID_PARAMETER_VALUE: Changing param values is not allowed")
                && lines[0].contains("dropped"),
            "{lines:?}"
        );
        let seen = seen.lock().unwrap();
        assert_eq!(seen[3].1, "hello");
        let second: serde_json::Value = serde_json::from_str(&seen[4].1).unwrap();
        assert_eq!(second["params"], serde_json::json!([]));
        assert_eq!(second["metrics"][0]["key"], "m");
        assert_eq!(second["run_id"], "r1");
        let update: serde_json::Value = serde_json::from_str(&seen[5].1).unwrap();
        assert_eq!(update["status"], "FINISHED");
    }

    #[test]
    fn an_unavailable_server_gets_the_same_batch_again_with_one_warning() {
        let (url, seen) = fake_server(vec![(503, "busy"), (503, "busy"), (500, r#"{"message": "oops"}"#)]);
        let lines = log_a_run(&url);
        let p = paths(&seen);
        assert_eq!(p.iter().filter(|p| p.ends_with("log-batch")).count(), 5, "{p:?}");
        // The first batch (the param) was sent four times, identical.
        let seen = seen.lock().unwrap();
        let batches: Vec<&String> = seen
            .iter()
            .filter(|(p, _)| p.ends_with("log-batch"))
            .map(|(_, b)| b)
            .collect();
        assert!(batches[..4].iter().all(|b| *b == batches[0]) && batches[0].contains("\"a\""));
        assert!(batches[4].contains("\"m\""));
        assert_eq!(lines.len(), 2, "{lines:?}");
        assert!(lines[0].starts_with("warning: MLflow at") && lines[0].contains("unreachable (HTTP 503: busy)"));
        assert!(lines[1].contains("reachable again"));
    }

    #[test]
    fn further_refusals_of_a_run_are_counted_not_repeated() {
        let refused =
            r#"{"error_code": "INVALID_PARAMETER_VALUE", "message": "The run must be in the 'active' state"}"#;
        let (url, seen) = fake_server(vec![(400, refused), (400, refused)]);
        let lines = log_a_run(&url);
        assert_eq!(paths(&seen).iter().filter(|p| p.ends_with("log-batch")).count(), 2);
        assert_eq!(lines.len(), 2, "{lines:?}");
        assert!(lines[0].contains("refused 1 param of run 'r'") && lines[0].contains("'active' state"));
        assert!(
            lines[1].contains("refused further requests, dropped as well: 1 of run 'r'"),
            "{lines:?}"
        );
    }

    #[test]
    fn batches_keep_each_runs_order_across_interleaved_runs() {
        let metric = |k: &str| Record::Metric {
            key: k.into(),
            value: 1.0,
            timestamp: 1,
            step: 1,
        };
        let new = |name: &str| NewRun {
            experiment: Experiment::Id("0".into()),
            name: name.into(),
            tags: vec![],
            parent: None,
        };
        let mut st = State::default();
        for (i, name) in ["a", "b"].into_iter().enumerate() {
            st.runs.push(Slot {
                name: name.into(),
                id: Some(format!("id-{name}")),
                ..Slot::default()
            });
            assert_eq!(st.runs.len() - 1, i);
        }
        st.runs.push(Slot::default());
        let log = |run, k: &str| Op::Log { run, record: metric(k) };
        st.queue = VecDeque::from([
            log(0, "a1"),
            log(1, "b1"),
            log(0, "a2"),
            Op::Create {
                run: 2,
                new: new("c"),
                start_time: 0,
            },
            log(0, "a3"),
            Op::End {
                run: 0,
                status: "FINISHED",
                end_time: Some(0),
            },
            log(0, "a4"),
            log(1, "b2"),
        ]);
        let keys = |w: &Work| match w {
            Work::Logs { run_id, batch, .. } => {
                let ks: Vec<String> = batch
                    .metrics
                    .iter()
                    .map(|m| match m {
                        Record::Metric { key, .. } => key.clone(),
                        _ => unreachable!(),
                    })
                    .collect();
                format!("{run_id}: {}", ks.join(","))
            }
            Work::Create { new, .. } => format!("create {}", new.name),
            Work::End { run_id, .. } => format!("end {run_id}"),
            Work::Artifact { .. } => "artifact".into(),
        };
        let mut order = Vec::new();
        while let Some((w, _)) = next_work(&mut st) {
            order.push(keys(&w));
        }
        // Run a's records up to its end go together (past b's and c's ops); what a logged after
        // its end comes after it.
        assert_eq!(
            order,
            ["id-a: a1,a2,a3", "id-b: b1,b2", "create c", "end id-a", "id-a: a4"]
        );
    }
}
