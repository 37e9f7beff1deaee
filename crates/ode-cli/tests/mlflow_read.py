"""Reads an MLflow experiment back with MLflow's own Python client, for crates/ode-cli/tests/cli/mlflow.rs.

Usage: python mlflow_read.py TRACKING_URI EXPERIMENT DOWNLOAD_DIR

Prints one JSON object: {"runs": [...]}, each run with its info, params, tags, every metric's full
history (step, value, timestamp in logging order), its artifacts (path, size) and, downloaded into
DOWNLOAD_DIR/<run_id>/, the local paths of its files.
"""

import json
import math
import os
import sys

from mlflow.tracking import MlflowClient


def value(v):
    # JSON has no NaN or infinities: the same strings metrics.jsonl writes.
    if math.isnan(v):
        return "NaN"
    if math.isinf(v):
        return "inf" if v > 0 else "-inf"
    return v


def main():
    uri, experiment, download = sys.argv[1], sys.argv[2], sys.argv[3]
    client = MlflowClient(tracking_uri=uri)
    exp = client.get_experiment_by_name(experiment)
    if exp is None:
        print(json.dumps({"runs": []}))
        return
    runs = []
    for run in client.search_runs([exp.experiment_id], max_results=1000):
        run_id = run.info.run_id
        metrics = {}
        for key in sorted(run.data.metrics):
            history = client.get_metric_history(run_id, key)
            metrics[key] = [[m.step, value(m.value), m.timestamp] for m in history]
        artifacts = [{"path": a.path, "size": a.file_size} for a in client.list_artifacts(run_id)]
        files = {}
        if artifacts:
            dest = os.path.join(download, run_id)
            os.makedirs(dest, exist_ok=True)
            for a in artifacts:
                files[a["path"]] = client.download_artifacts(run_id, a["path"], dest)
        runs.append(
            {
                "run_id": run_id,
                "name": run.info.run_name,
                "status": run.info.status,
                "start_time": run.info.start_time,
                "end_time": run.info.end_time,
                "params": run.data.params,
                "tags": run.data.tags,
                "metrics": metrics,
                "artifacts": artifacts,
                "files": files,
            }
        )
    print(json.dumps({"experiment_id": exp.experiment_id, "runs": runs}))


if __name__ == "__main__":
    main()
