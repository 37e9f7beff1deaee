//! What one `runs/log-batch` request may carry, and how queued records are cut into batches.
//!
//! MLflow's limits (mlflow/utils/validation.py): at most 1000 metrics, 100 params and 100 tags
//! per request, 1000 items in all; param values up to 6000 characters, tag values up to 8000,
//! keys up to 250. A batch here also stays under [`MAX_BYTES`] of JSON.

use serde_json::{Value, json};

/// Most metrics in one request.
pub const MAX_METRICS: usize = 1000;
/// Most params in one request.
pub const MAX_PARAMS: usize = 100;
/// Most tags in one request.
pub const MAX_TAGS: usize = 100;
/// Most items (metrics, params and tags together) in one request.
pub const MAX_ITEMS: usize = 1000;
/// Most bytes of JSON records in one request (the server takes about 1 MB).
pub const MAX_BYTES: usize = 900_000;

/// One thing logged to a run.
#[derive(Debug, Clone, PartialEq)]
pub enum Record {
    /// A parameter.
    Param {
        /// Name.
        key: String,
        /// Value.
        value: String,
    },
    /// A metric value at a step, stamped when it was logged.
    Metric {
        /// Name.
        key: String,
        /// Value (NaN and infinities are sent as MLflow's strings for them).
        value: f64,
        /// Milliseconds since the epoch when it was logged.
        timestamp: i64,
        /// Step (the epoch for the trainer's metrics).
        step: i64,
    },
    /// A tag.
    Tag {
        /// Name.
        key: String,
        /// Value.
        value: String,
    },
}

impl Record {
    /// The record as an item of a `runs/log-batch` request.
    pub fn to_json(&self) -> Value {
        match self {
            Record::Param { key, value } | Record::Tag { key, value } => json!({ "key": key, "value": value }),
            Record::Metric {
                key,
                value,
                timestamp,
                step,
            } => {
                let value = if value.is_finite() {
                    json!(value)
                } else if value.is_nan() {
                    json!("NaN")
                } else if *value > 0.0 {
                    json!("Infinity")
                } else {
                    json!("-Infinity")
                };
                json!({ "key": key, "value": value, "timestamp": timestamp, "step": step })
            }
        }
    }

    /// An upper bound of the record's size in a request.
    fn bytes(&self) -> usize {
        match self {
            Record::Param { key, value } | Record::Tag { key, value } => key.len() + value.len() + 32,
            Record::Metric { key, .. } => key.len() + 96,
        }
    }
}

/// The records of one `runs/log-batch` request, within MLflow's limits.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Batch {
    /// Params.
    pub params: Vec<Record>,
    /// Metrics.
    pub metrics: Vec<Record>,
    /// Tags.
    pub tags: Vec<Record>,
    bytes: usize,
}

impl Batch {
    /// Adds `r` if the batch stays within the limits; otherwise gives it back.
    pub fn try_push(&mut self, r: Record) -> Result<(), Record> {
        let items = self.len();
        let (list, limit) = match r {
            Record::Param { .. } => (&mut self.params, MAX_PARAMS),
            Record::Metric { .. } => (&mut self.metrics, MAX_METRICS),
            Record::Tag { .. } => (&mut self.tags, MAX_TAGS),
        };
        let bytes = r.bytes();
        // A single over-long record still goes alone (the server then says what is wrong).
        if list.len() >= limit || items >= MAX_ITEMS || (items > 0 && self.bytes + bytes > MAX_BYTES) {
            return Err(r);
        }
        list.push(r);
        self.bytes += bytes;
        Ok(())
    }

    /// Records in the batch.
    pub fn len(&self) -> usize {
        self.params.len() + self.metrics.len() + self.tags.len()
    }

    /// The request body, less `run_id`.
    pub fn to_json(&self) -> Value {
        let list = |v: &[Record]| v.iter().map(Record::to_json).collect::<Vec<_>>();
        json!({ "params": list(&self.params), "metrics": list(&self.metrics), "tags": list(&self.tags) })
    }

    /// `3 params, 120 metrics, 1 tag` (the kinds present).
    pub fn describe(&self) -> String {
        let mut parts = Vec::new();
        for (n, what) in [
            (self.params.len(), "param"),
            (self.metrics.len(), "metric"),
            (self.tags.len(), "tag"),
        ] {
            if n > 0 {
                parts.push(format!("{n} {what}{}", if n == 1 { "" } else { "s" }));
            }
        }
        parts.join(", ")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::VecDeque;

    /// Takes the first batch from `records` in order: as many as fit within the limits; the rest
    /// stay, in order.
    fn take_batch(records: &mut VecDeque<Record>) -> Batch {
        let mut batch = Batch::default();
        while let Some(r) = records.pop_front() {
            if let Err(r) = batch.try_push(r) {
                records.push_front(r);
                break;
            }
        }
        batch
    }

    fn metric(i: usize) -> Record {
        Record::Metric {
            key: format!("m{}", i % 7),
            value: i as f64,
            timestamp: i as i64,
            step: i as i64,
        }
    }
    fn param(i: usize) -> Record {
        Record::Param {
            key: format!("p{i}"),
            value: "v".into(),
        }
    }
    fn tag(i: usize) -> Record {
        Record::Tag {
            key: format!("t{i}"),
            value: "v".into(),
        }
    }

    /// Cuts `records` into batches, checking each against the limits and that nothing is lost,
    /// duplicated or reordered.
    fn cut(records: Vec<Record>) -> Vec<Batch> {
        let mut q: VecDeque<Record> = records.iter().cloned().collect();
        let mut batches = Vec::new();
        while !q.is_empty() {
            let b = take_batch(&mut q);
            assert!(b.len() > 0);
            assert!(b.metrics.len() <= MAX_METRICS && b.params.len() <= MAX_PARAMS && b.tags.len() <= MAX_TAGS);
            assert!(b.len() <= MAX_ITEMS);
            assert!(b.to_json().to_string().len() <= MAX_BYTES + 1000 || b.len() == 1);
            batches.push(b);
        }
        // Within a kind the order is kept, and every record is sent once.
        for kind in 0..3 {
            let pick = |r: &&Record| {
                matches!(
                    (kind, r),
                    (0, Record::Param { .. }) | (1, Record::Metric { .. }) | (2, Record::Tag { .. })
                )
            };
            let sent: Vec<&Record> = batches
                .iter()
                .flat_map(|b| [&b.params, &b.metrics, &b.tags])
                .flatten()
                .filter(pick)
                .collect();
            let queued: Vec<&Record> = records.iter().filter(pick).collect();
            assert_eq!(sent, queued);
        }
        batches
    }

    #[test]
    fn batches_respect_mlflows_limits() {
        // 2500 metrics: 1000 + 1000 + 500.
        let sizes: Vec<usize> = cut((0..2500).map(metric).collect()).iter().map(Batch::len).collect();
        assert_eq!(sizes, [1000, 1000, 500]);
        // 250 params: 100 per request.
        let b = cut((0..250).map(param).collect());
        assert_eq!(b.iter().map(|b| b.params.len()).collect::<Vec<_>>(), [100, 100, 50]);
        // 150 tags then 5 metrics: the first cut stops at the 100th tag.
        let mut mixed: Vec<Record> = (0..150).map(tag).collect();
        mixed.extend((0..5).map(metric));
        let b = cut(mixed);
        assert_eq!(
            b.iter().map(|b| (b.tags.len(), b.metrics.len())).collect::<Vec<_>>(),
            [(100, 0), (50, 5)]
        );
        // 20 params and 995 metrics: 1000 items in all, then the rest.
        let mut mixed: Vec<Record> = (0..20).map(param).collect();
        mixed.extend((0..995).map(metric));
        let b = cut(mixed);
        assert_eq!(b.iter().map(Batch::len).collect::<Vec<_>>(), [1000, 15]);
        // Long values: 100 params of 6000 characters and 100 tags of 8000 (1.4 MB) are cut by
        // size before the count limits.
        let mut long: Vec<Record> = (0..100)
            .map(|i| Record::Param {
                key: format!("p{i}"),
                value: "x".repeat(6000),
            })
            .collect();
        long.extend((0..100).map(|i| Record::Tag {
            key: format!("t{i}"),
            value: "y".repeat(8000),
        }));
        let b = cut(long);
        assert_eq!(b.len(), 2);
        assert_eq!(b[0].params.len(), 100);
        assert!(b[0].tags.len() < 100 && !b[0].tags.is_empty(), "{}", b[0].tags.len());
        assert!(b.iter().all(|b| b.to_json().to_string().len() <= MAX_BYTES));
    }

    #[test]
    fn non_finite_metrics_use_mlflows_strings() {
        let m = |v: f64| Record::Metric {
            key: "k".into(),
            value: v,
            timestamp: 1,
            step: 2,
        };
        assert_eq!(m(f64::NAN).to_json()["value"], "NaN");
        assert_eq!(m(f64::INFINITY).to_json()["value"], "Infinity");
        assert_eq!(m(f64::NEG_INFINITY).to_json()["value"], "-Infinity");
        assert_eq!(m(0.5).to_json()["value"], 0.5);
        assert_eq!(m(0.5).to_json()["step"], 2);
    }
}
