//! Crash recovery shared by the SQLite and PostgreSQL store tests: a `RUNNING` trial whose
//! worker id names a dead process of this machine is re-queued by the next claim at once, long
//! before its lease would expire; live, foreign and old-style workers keep their trials.

use ode_search::Params;
use ode_search::store::{ParamDistribution, StoreError, StudyStore, TrialState};
use ode_search::worker_id::{WorkerId, process_start};
use std::collections::BTreeMap;

/// A worker id of a process of this machine that has exited (a child, reaped).
fn dead_worker(me: &WorkerId) -> WorkerId {
    let mut child = std::process::Command::new("true").spawn().expect("spawn `true`");
    let pid = child.id();
    let start = process_start(pid);
    child.wait().expect("reap the child");
    WorkerId {
        pid,
        // Read before the child was reaped (it may already have been a zombie then); if it
        // was gone already, any start time names a dead process.
        start: start.unwrap_or(0),
        thread: 0,
        ..me.clone()
    }
}

/// Runs the scenario on a fresh store from `open` (two handles on the same study store).
pub fn dead_workers_trials_are_requeued_at_once<S: StudyStore>(open: impl Fn() -> S) {
    let Some(me) = WorkerId::current(0) else {
        eprintln!("no /proc here: crash recovery falls back to leases, nothing to test");
        return;
    };
    let (mut a, mut b) = (open(), open());
    let study = a.open_study("crash").unwrap();
    let reuse = a.open_study("reused-pid").unwrap();
    let mut p = Params::new();
    p.insert("latent_dim".into(), toml::Value::Integer(4));
    let dists: BTreeMap<String, ParamDistribution> = BTreeMap::from([(
        "latent_dim".into(),
        ParamDistribution::Categorical(vec![toml::Value::Integer(4)]),
    )]);
    for k in 0..4 {
        a.enqueue(study, k, &p, &dists).unwrap();
    }
    a.enqueue(reuse, 0, &p, &dists).unwrap();
    let hour = 3600.0;
    let dead = dead_worker(&me);
    let foreign = WorkerId {
        boot: "another-boot".into(),
        ..dead.clone()
    };
    // Trials 0-2 go to a live worker (this process), an old-style id naming the dead pid and
    // a process of another boot; trial 3, claimed last (a claim would recover it at once), to
    // the dead process.
    let ids = [
        me.to_string(),
        format!("{}-{}-0", me.host, dead.pid),
        foreign.to_string(),
        dead.to_string(),
    ];
    let claims: Vec<_> = ids
        .iter()
        .map(|w| a.claim(study, w, hour, 3).unwrap().expect("a waiting trial"))
        .collect();
    assert_eq!(claims.iter().map(|c| c.number).collect::<Vec<_>>(), [0, 1, 2, 3]);
    a.report(claims[3].trial_id, 1, 1, 0.5).unwrap();
    // One claim with an hour's lease: the dead process's trial comes back at once, the others
    // stay with their workers.
    let got = b
        .claim(study, "rescuer", hour, 3)
        .unwrap()
        .expect("the dead worker's trial");
    assert_eq!((got.number, got.attempt), (3, 2));
    assert!(
        b.claim(study, "rescuer", hour, 3).unwrap().is_none(),
        "nothing else is taken"
    );
    let trials = b.trials(study).unwrap();
    for t in &trials[..3] {
        assert_eq!((t.state, t.attempt), (TrialState::Running, 1), "trial {}", t.number);
        assert_eq!(t.worker.as_deref(), Some(ids[t.number as usize].as_str()));
    }
    assert_eq!(trials[3].worker.as_deref(), Some("rescuer"));
    assert_eq!(
        trials[3].intermediate,
        BTreeMap::from([(1, 0.5)]),
        "kept for the re-run"
    );
    // The dead worker's attempt is fenced; the rescuer finishes the trial.
    match a.report(claims[3].trial_id, 1, 2, 0.4) {
        Err(StoreError::Fenced {
            attempt: 1, current: 2, ..
        }) => {}
        other => panic!("expected a fenced write, got {other:?}"),
    }
    b.finish(got.trial_id, 2, TrialState::Complete, Some(0.3)).unwrap();
    // This process's pid with another start time: the pid was reused, the worker is dead.
    let reused = WorkerId {
        start: me.start + 1,
        ..me.clone()
    };
    a.claim(reuse, &reused.to_string(), hour, 3).unwrap().expect("trial 0");
    let again = b.claim(reuse, "rescuer", hour, 3).unwrap().expect("recovered");
    assert_eq!((again.number, again.attempt), (0, 2));
    b.finish(again.trial_id, 2, TrialState::Complete, Some(0.2)).unwrap();
    // A trial whose dead workers used up max_attempts fails instead, with the reason.
    a.enqueue(study, 4, &p, &dists).unwrap();
    let four = a.claim(study, &dead.to_string(), hour, 1).unwrap().expect("trial 4");
    assert_eq!((four.number, four.attempt), (4, 1));
    assert!(b.claim(study, "rescuer", hour, 1).unwrap().is_none());
    let t = b.trials(study).unwrap().into_iter().find(|t| t.number == 4).unwrap();
    assert_eq!(t.state, TrialState::Fail);
    assert_eq!(t.user_attrs["fail_reason"], "lost its worker 1 times");
}
