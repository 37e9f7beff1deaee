//! [`Split`]: one chronological split's normalised rows and its sliding windows.

/// One chronological split (train, val or test): its normalised rows and its windows.
///
/// Window `i` uses the split's rows `[i, i + C)` as context and `[i + C, i + C + H)` as targets.
#[derive(Debug, Clone, PartialEq)]
pub struct Split {
    pub(super) name: &'static str,
    pub(super) start_row: usize,
    pub(super) rows: usize,
    pub(super) features: Vec<f32>,
    pub(super) targets: Vec<f32>,
    pub(super) input_dim: usize,
    pub(super) output_dim: usize,
    pub(super) context_len: usize,
    pub(super) horizon: usize,
    pub(super) num_windows: usize,
}

impl Split {
    /// `"train"`, `"val"` or `"test"`.
    pub fn name(&self) -> &'static str {
        self.name
    }

    /// Table row of the split's first row.
    pub fn start_row(&self) -> usize {
        self.start_row
    }

    /// Number of rows in the split.
    pub fn rows(&self) -> usize {
        self.rows
    }

    /// Number of windows used: `rows - C - H + 1` (0 if negative), capped by the configuration.
    pub fn num_windows(&self) -> usize {
        self.num_windows
    }

    /// Number of windows the split's rows allow, before any cap: `max(rows - C - H + 1, 0)`.
    pub fn available_windows(&self) -> usize {
        (self.rows + 1).saturating_sub(self.context_len + self.horizon)
    }

    /// Normalised feature rows, row-major `rows × input_dim`.
    pub fn features(&self) -> &[f32] {
        &self.features
    }

    /// Normalised target rows, row-major `rows × output_dim`.
    pub fn targets(&self) -> &[f32] {
        &self.targets
    }

    /// Number of features `D`.
    pub fn input_dim(&self) -> usize {
        self.input_dim
    }

    /// Number of targets `O`.
    pub fn output_dim(&self) -> usize {
        self.output_dim
    }

    /// Context length `C`.
    pub fn context_len(&self) -> usize {
        self.context_len
    }

    /// Horizon `H`.
    pub fn horizon(&self) -> usize {
        self.horizon
    }

    /// Table row of window `i`'s first target row (the first forecast row).
    pub fn target_start_row(&self, i: usize) -> usize {
        self.start_row + i + self.context_len
    }

    /// Copies the windows `window_indices` (a batch of `B`) into `ctx` (`B × C·D`: each window's
    /// context rows flattened time-major, row 0's `D` features first) and `tgt` (`B × H·O`, the
    /// same layout). Allocates nothing.
    ///
    /// # Panics
    /// If a buffer's length is not exactly `B·C·D` (`B·H·O`) or an index is not below
    /// [`num_windows`](Self::num_windows).
    pub fn fill_batch(&self, window_indices: &[usize], ctx: &mut [f32], tgt: &mut [f32]) {
        let (c, h, d, o) = (self.context_len, self.horizon, self.input_dim, self.output_dim);
        let b = window_indices.len();
        assert_eq!(
            ctx.len(),
            b * c * d,
            "fill_batch: ctx must hold B·C·D = {b}·{c}·{d} values"
        );
        assert_eq!(
            tgt.len(),
            b * h * o,
            "fill_batch: tgt must hold B·H·O = {b}·{h}·{o} values"
        );
        for (k, &i) in window_indices.iter().enumerate() {
            assert!(
                i < self.num_windows,
                "fill_batch: window {i} out of range: the {} split has {} windows",
                self.name,
                self.num_windows
            );
            ctx[k * c * d..(k + 1) * c * d].copy_from_slice(&self.features[i * d..(i + c) * d]);
            tgt[k * h * o..(k + 1) * h * o].copy_from_slice(&self.targets[(i + c) * o..(i + c + h) * o]);
        }
    }
}
