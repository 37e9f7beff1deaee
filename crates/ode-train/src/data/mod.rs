//! The data pipeline of the reference model (`reference-model.md`, "Data pipeline").
//!
//! A CSV file (or a generated [`Table`]) becomes a [`Dataset`]: the numeric columns are split
//! chronologically into train, validation and test rows with the Informer/Autoformer "custom"
//! split sizes, z-scored with the training split's mean and population standard deviation, and
//! cut into sliding windows (stride 1) inside each split. [`Split::fill_batch`] copies a batch of
//! windows into caller-owned buffers without allocating.
//!
//! ```
//! use ode_train::data::{DataConfig, Dataset, Table};
//! // 100 rows of two numeric columns.
//! let rows: Vec<f64> = (0..100).flat_map(|i| [i as f64, (i as f64 * 0.1).sin()]).collect();
//! let table = Table {
//!     columns: vec!["a".into(), "b".into()],
//!     data: rows,
//!     time: None,
//! };
//! let cfg = DataConfig { context_len: 4, horizon: 2, ..DataConfig::default() };
//! let ds = Dataset::from_table(&table, &cfg, "example").unwrap();
//! assert_eq!((ds.train.rows(), ds.val.rows(), ds.test.rows()), (70, 10, 20));
//! assert_eq!(ds.train.num_windows(), 70 - 4 - 2 + 1);
//! let (mut ctx, mut tgt) = (vec![0.0f32; 2 * 4 * 2], vec![0.0f32; 2 * 2 * 2]);
//! ds.train.fill_batch(&[0, 5], &mut ctx, &mut tgt);
//! ```

mod config;
mod csv_file;
mod dataset;
mod error;
mod scaler;
mod split;
mod table;
mod time_order;

pub use config::*;
pub use csv_file::*;
pub use dataset::*;
pub use error::*;
pub use scaler::*;
pub use split::*;
pub use table::*;
