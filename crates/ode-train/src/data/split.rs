//! [`Split`]: one chronological split's normalised rows and its sliding windows, or windows
//! given one by one ([`Split::from_windows`]).

use super::DataError;

/// One chronological split (train, val or test): its normalised rows and its windows.
///
/// Window `i` uses the split's rows `[i, i + C)` as context and `[i + C, i + C + H)` as targets;
/// a split made by [`Split::from_windows`] holds each window's rows on their own instead.
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
    /// Windows stored one after another (`features`: `N × C·D`, `targets`: `N × H·O`) rather
    /// than as overlapping rows.
    pub(super) stacked: bool,
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

    /// Number of windows the split's rows allow, before any cap: `max(rows - C - H + 1, 0)`
    /// (the window count for [`Split::from_windows`]).
    pub fn available_windows(&self) -> usize {
        if self.stacked {
            return self.num_windows;
        }
        (self.rows + 1).saturating_sub(self.context_len + self.horizon)
    }

    /// Whether the windows were given one by one ([`Split::from_windows`]); then
    /// [`features`](Self::features) and [`targets`](Self::targets) hold each window's rows in
    /// turn and row numbers refer to windows.
    pub fn is_stacked(&self) -> bool {
        self.stacked
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

    /// Table row of window `i`'s first target row (the first forecast row); `i` itself for
    /// a split made by [`Split::from_windows`].
    pub fn target_start_row(&self, i: usize) -> usize {
        if self.stacked {
            return i;
        }
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
            let (x, y) = if self.stacked {
                (i * c * d..(i + 1) * c * d, i * h * o..(i + 1) * h * o)
            } else {
                (i * d..(i + c) * d, (i + c) * o..(i + c + h) * o)
            };
            ctx[k * c * d..(k + 1) * c * d].copy_from_slice(&self.features[x]);
            tgt[k * h * o..(k + 1) * h * o].copy_from_slice(&self.targets[y]);
        }
    }
}

/// The shape `[N, C, D]` (`[N, H, O]`) of `N` windows, for errors.
fn shape(n: usize, a: usize, b: usize) -> String {
    format!("[{n}, {a}, {b}]")
}

impl Split {
    /// A split of `n` independent windows: `features` holds `n × C × D` context values and
    /// `targets` `n × H × O` target values (window-major, then time, then column), already in
    /// the model's units; `name` is `train`, `val` or `test` for messages.
    ///
    /// Errors name the array, its shape and the first non-finite entry: an empty batch, a
    /// zero dimension, a length that is not the product of the shape, or a NaN or infinity.
    pub fn from_windows(
        name: &'static str,
        features: Vec<f32>,
        targets: Vec<f32>,
        (n, c, d): (usize, usize, usize),
        (h, o): (usize, usize),
    ) -> Result<Split, DataError> {
        let bad = |reason: String| DataError::Windows { reason };
        if n == 0 || c == 0 || d == 0 || h == 0 || o == 0 {
            return Err(bad(format!(
                "{name} windows: X has shape {} and Y {}; every dimension must be at least 1",
                shape(n, c, d),
                shape(n, h, o)
            )));
        }
        for (what, values, want, dims) in [("X", &features, n * c * d, (c, d)), ("Y", &targets, n * h * o, (h, o))] {
            if values.len() != want {
                return Err(bad(format!(
                    "{name} windows: {what} holds {} values, not the {want} of shape {}",
                    values.len(),
                    shape(n, dims.0, dims.1)
                )));
            }
            if let Some(k) = values.iter().position(|v| !v.is_finite()) {
                let (w, t, j) = (k / (dims.0 * dims.1), k / dims.1 % dims.0, k % dims.1);
                return Err(bad(format!(
                    "{name} windows: {what}[{w}, {t}, {j}] is {} (shape {}); remove or fill non-finite values",
                    values[k],
                    shape(n, dims.0, dims.1)
                )));
            }
        }
        Ok(Split {
            name,
            start_row: 0,
            rows: n,
            features,
            targets,
            input_dim: d,
            output_dim: o,
            context_len: c,
            horizon: h,
            num_windows: n,
            stacked: true,
        })
    }
}
