//! The tape of a solve: its accepted steps, recorded by [`crate::Solver::solve_taped`] for
//! backpropagation through the solver.

/// One accepted step on a [`Tape`].
#[derive(Debug, Clone)]
pub(crate) struct TapeStep<T> {
    /// The sample.
    pub(crate) row: usize,
    /// Time at the step start.
    pub(crate) t: T,
    /// The step.
    pub(crate) h: T,
    /// Range into [`Tape::outs`] of the outputs that fell inside this step.
    pub(crate) outs: std::ops::Range<usize>,
}

/// The accepted steps of a solve (per sample: time, step size, state at the step start, and
/// the outputs inside the step), recorded by [`Solver::solve_taped`](crate::Solver::solve_taped) for backpropagation
/// through the solver. Memory grows with the number of steps; reuse one tape across solves
/// so it stops allocating once it has grown.
#[derive(Debug, Clone, Default)]
pub struct Tape<T> {
    /// Index into `steps` of the first step of each iteration of the solver loop.
    pub(crate) iters: Vec<usize>,
    pub(crate) steps: Vec<TapeStep<T>>,
    /// The state at each step's start (`dim` values per step).
    pub(crate) ys: Vec<T>,
    /// `(output index, θ)`: θ = None when the output is the step end itself.
    pub(crate) outs: Vec<(usize, Option<T>)>,
    pub(crate) dim: usize,
    pub(crate) batch: usize,
    pub(crate) n_ts: usize,
}

impl<T> Tape<T> {
    /// An empty tape.
    pub fn new() -> Self {
        Self {
            iters: Vec::new(),
            steps: Vec::new(),
            ys: Vec::new(),
            outs: Vec::new(),
            dim: 0,
            batch: 0,
            n_ts: 0,
        }
    }

    /// Forgets the recorded steps, keeping the memory.
    pub fn clear(&mut self) {
        self.iters.clear();
        self.steps.clear();
        self.ys.clear();
        self.outs.clear();
    }

    /// Number of recorded accepted steps (summed over samples).
    pub fn num_steps(&self) -> usize {
        self.steps.len()
    }

    /// Number of values held (states at step starts), a measure of the tape's memory.
    pub fn stored_values(&self) -> usize {
        self.ys.len()
    }
}

impl<T: Copy> Tape<T> {
    /// Starts a solve of `batch` samples of `dim` values with `n_ts` output times.
    pub(crate) fn start(&mut self, dim: usize, batch: usize, n_ts: usize) {
        debug_assert!(self.steps.is_empty());
        self.dim = dim;
        self.batch = batch;
        self.n_ts = n_ts;
    }

    /// Starts an iteration of the solver loop (the steps its samples take together).
    pub(crate) fn begin_iteration(&mut self) {
        self.iters.push(self.steps.len());
    }

    /// Records an accepted step of sample `row` from `t` by `h`, starting from state `y`.
    pub(crate) fn record_step(&mut self, row: usize, t: T, h: T, y: &[T]) {
        let at = self.outs.len();
        self.steps.push(TapeStep {
            row,
            t,
            h,
            outs: at..at,
        });
        self.ys.extend_from_slice(y);
    }

    /// Records that output `index` fell inside the last recorded step, at fraction `theta` of
    /// it (`None`: at its end).
    pub(crate) fn record_output(&mut self, index: usize, theta: Option<T>) {
        self.outs.push((index, theta));
        self.steps.last_mut().expect("step recorded").outs.end += 1;
    }

    /// The range into `steps` of iteration `it`.
    pub(crate) fn iteration(&self, it: usize) -> std::ops::Range<usize> {
        self.iters[it]..self.iters.get(it + 1).copied().unwrap_or(self.steps.len())
    }
}

#[cfg(test)]
mod tests {
    use super::Tape;

    #[test]
    fn steps_and_outputs_are_recorded_per_iteration() {
        let mut tape = Tape::<f64>::new();
        tape.start(2, 3, 4);
        tape.begin_iteration();
        tape.record_step(0, 0.0, 0.5, &[1.0, 2.0]);
        tape.record_output(1, Some(0.25));
        tape.record_output(2, None);
        tape.record_step(2, 0.0, 0.5, &[3.0, 4.0]);
        tape.begin_iteration();
        tape.begin_iteration();
        tape.record_step(0, 0.5, 0.5, &[5.0, 6.0]);
        assert_eq!((tape.dim, tape.batch, tape.n_ts), (2, 3, 4));
        assert_eq!(tape.num_steps(), 3);
        assert_eq!(tape.stored_values(), 6);
        assert_eq!(
            (tape.iteration(0), tape.iteration(1), tape.iteration(2)),
            (0..2, 2..2, 2..3)
        );
        assert_eq!(tape.steps[0].outs, 0..2);
        assert_eq!(tape.steps[1].outs, 2..2);
        assert_eq!(tape.outs, vec![(1, Some(0.25)), (2, None)]);
        assert_eq!(&tape.ys[4..], &[5.0, 6.0]);
        tape.clear();
        assert_eq!((tape.num_steps(), tape.stored_values()), (0, 0));
    }
}
