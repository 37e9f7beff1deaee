//! The MLflow tracking server's REST API (`/api/2.0/mlflow/...`) and its artifact proxy
//! (`/api/2.0/mlflow-artifacts/artifacts/...`), over blocking HTTP.

use super::batch::Batch;
use serde_json::{Value, json};
use std::time::Duration;

/// Why a request did not succeed.
#[derive(Debug, Clone, PartialEq)]
pub enum ApiError {
    /// The server could not be reached or could not answer now (connection refused, timeout,
    /// HTTP 5xx, 429, 408): retrying the same request later may succeed.
    Unreachable(String),
    /// The server refused the request (another HTTP 4xx), e.g. an invalid value: retrying the
    /// same request cannot succeed.
    Rejected {
        /// HTTP status.
        status: u16,
        /// MLflow's `error_code`, e.g. `INVALID_PARAMETER_VALUE`.
        code: String,
        /// MLflow's `message`.
        message: String,
    },
}

impl std::fmt::Display for ApiError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ApiError::Unreachable(why) => f.write_str(why),
            ApiError::Rejected { status, code, message } => write!(f, "HTTP {status} {code}: {message}"),
        }
    }
}

/// A run as created on the server.
#[derive(Debug, Clone, PartialEq)]
pub struct RunInfo {
    /// The run's id.
    pub run_id: String,
    /// Where its artifacts go, e.g. `mlflow-artifacts:/1/<run_id>/artifacts`.
    pub artifact_uri: String,
}

/// A client of one tracking server.
#[derive(Clone)]
pub struct Client {
    base: String,
    agent: ureq::Agent,
}

impl Client {
    /// A client of the server at `base` (`http://HOST:PORT`, no trailing slash).
    pub fn new(base: &str) -> Self {
        let config = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .timeout_connect(Some(Duration::from_secs(5)))
            .timeout_global(Some(Duration::from_secs(60)))
            // Below the servers' keep-alive (uvicorn: 5 s), so that no idle connection is reused
            // just as the server closes it.
            .max_idle_age(Duration::from_secs(4))
            .build();
        Self {
            base: base.trim_end_matches('/').to_string(),
            agent: ureq::Agent::new_with_config(config),
        }
    }

    /// The server's address.
    pub fn base(&self) -> &str {
        &self.base
    }

    /// The id of the experiment named `name`, created when there is none
    /// (`experiments/get-by-name`, then `experiments/create`).
    pub fn experiment_id(&self, name: &str) -> Result<String, ApiError> {
        let url = format!("{}/api/2.0/mlflow/experiments/get-by-name", self.base);
        let got = self.agent.get(&url).query("experiment_name", name).call();
        match answer(got) {
            Ok(v) => return text(&v["experiment"]["experiment_id"], "experiment_id"),
            Err(ApiError::Rejected { code, .. }) if code == "RESOURCE_DOES_NOT_EXIST" => {}
            Err(e) => return Err(e),
        }
        match self.post("experiments/create", &json!({ "name": name })) {
            Ok(v) => text(&v["experiment_id"], "experiment_id"),
            // Created by another process since the look-up.
            Err(ApiError::Rejected { code, .. }) if code == "RESOURCE_ALREADY_EXISTS" => {
                let v = answer(self.agent.get(&url).query("experiment_name", name).call())?;
                text(&v["experiment"]["experiment_id"], "experiment_id")
            }
            Err(e) => Err(e),
        }
    }

    /// Creates a run (`runs/create`) named `name` in the experiment, started at `start_time`
    /// (milliseconds since the epoch), with `tags`.
    pub fn create_run(
        &self,
        experiment_id: &str,
        name: &str,
        start_time: i64,
        tags: &[(String, String)],
    ) -> Result<RunInfo, ApiError> {
        let tags: Vec<Value> = tags.iter().map(|(k, v)| json!({ "key": k, "value": v })).collect();
        let v = self.post(
            "runs/create",
            &json!({ "experiment_id": experiment_id, "run_name": name, "start_time": start_time, "tags": tags }),
        )?;
        let info = &v["run"]["info"];
        Ok(RunInfo {
            run_id: text(&info["run_id"], "run_id")?,
            artifact_uri: text(&info["artifact_uri"], "artifact_uri")?,
        })
    }

    /// Logs params, metrics and tags to a run in one request (`runs/log-batch`).
    pub fn log_batch(&self, run_id: &str, batch: &Batch) -> Result<(), ApiError> {
        let mut body = batch.to_json();
        body["run_id"] = json!(run_id);
        self.post("runs/log-batch", &body).map(|_| ())
    }

    /// Sets a run's status (`FINISHED`, `FAILED`, `KILLED`, or `RUNNING` again) and, when given,
    /// its end time (`runs/update`).
    pub fn update_run(&self, run_id: &str, status: &str, end_time: Option<i64>) -> Result<(), ApiError> {
        let mut body = json!({ "run_id": run_id, "status": status });
        if let Some(t) = end_time {
            body["end_time"] = json!(t);
        }
        self.post("runs/update", &body).map(|_| ())
    }

    /// Uploads `bytes` as the artifact `name` of the run whose artifact root is `artifact_uri`,
    /// through the server's artifact proxy (`PUT /api/2.0/mlflow-artifacts/artifacts/PATH`).
    pub fn upload_artifact(&self, artifact_uri: &str, name: &str, bytes: &[u8]) -> Result<(), ApiError> {
        let root = proxied_path(artifact_uri).ok_or_else(|| ApiError::Rejected {
            status: 0,
            code: "ARTIFACTS_NOT_PROXIED".into(),
            message: format!(
                "the run's artifact root {artifact_uri} is not served by the tracking server (start `mlflow server` \
                 with its default --serve-artifacts)"
            ),
        })?;
        let path: Vec<String> = root
            .split('/')
            .chain(name.split('/'))
            .filter(|s| !s.is_empty())
            .map(encode)
            .collect();
        let url = format!("{}/api/2.0/mlflow-artifacts/artifacts/{}", self.base, path.join("/"));
        let sent = self
            .agent
            .put(&url)
            .header("Content-Type", "application/octet-stream")
            .send(bytes);
        answer(sent).map(|_| ())
    }

    /// POSTs `body` to `/api/2.0/mlflow/{endpoint}`.
    fn post(&self, endpoint: &str, body: &Value) -> Result<Value, ApiError> {
        let url = format!("{}/api/2.0/mlflow/{endpoint}", self.base);
        let sent = self
            .agent
            .post(&url)
            .header("Content-Type", "application/json")
            .send(body.to_string());
        answer(sent)
    }
}

/// The JSON of a successful answer, or why there is none.
fn answer(sent: Result<ureq::http::Response<ureq::Body>, ureq::Error>) -> Result<Value, ApiError> {
    let mut response = sent.map_err(|e| ApiError::Unreachable(e.to_string()))?;
    let status = response.status().as_u16();
    let body = response
        .body_mut()
        .read_to_string()
        .map_err(|e| ApiError::Unreachable(format!("reading the answer: {e}")))?;
    if (200..300).contains(&status) {
        return Ok(serde_json::from_str(&body).unwrap_or(Value::Null));
    }
    let parsed: Value = serde_json::from_str(&body).unwrap_or(Value::Null);
    let code = parsed["error_code"].as_str().unwrap_or("").to_string();
    let message = match parsed["message"].as_str() {
        Some(m) => m.to_string(),
        None => body.chars().take(300).collect::<String>().trim().to_string(),
    };
    if status >= 500 || status == 408 || status == 429 {
        return Err(ApiError::Unreachable(format!("HTTP {status}: {message}")));
    }
    Err(ApiError::Rejected { status, code, message })
}

/// A string field of an answer.
fn text(v: &Value, what: &str) -> Result<String, ApiError> {
    v.as_str().map(String::from).ok_or_else(|| ApiError::Rejected {
        status: 200,
        code: "BAD_ANSWER".into(),
        message: format!("the answer has no {what}"),
    })
}

/// The path under the artifact proxy of an `mlflow-artifacts:` URI (`mlflow-artifacts:/PATH`
/// or `mlflow-artifacts://HOST:PORT/PATH`); `None` for other artifact stores.
pub fn proxied_path(artifact_uri: &str) -> Option<String> {
    let rest = artifact_uri.strip_prefix("mlflow-artifacts:")?;
    let path = match rest.strip_prefix("//") {
        Some(host_and_path) => host_and_path.split_once('/').map_or("", |(_, p)| p),
        None => rest,
    };
    Some(path.trim_matches('/').to_string())
}

/// Percent-encodes a path segment (RFC 3986 unreserved characters stay).
fn encode(segment: &str) -> String {
    segment
        .bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn artifact_uris_map_to_proxy_paths() {
        assert_eq!(
            proxied_path("mlflow-artifacts:/1/abc/artifacts").as_deref(),
            Some("1/abc/artifacts")
        );
        assert_eq!(
            proxied_path("mlflow-artifacts://h:5000/1/abc/artifacts").as_deref(),
            Some("1/abc/artifacts")
        );
        assert_eq!(proxied_path("file:///tmp/mlruns/1/abc/artifacts"), None);
        assert_eq!(proxied_path("s3://bucket/1/abc"), None);
        assert_eq!(encode("a b/c.txt"), "a%20b%2Fc.txt");
    }
}
