#![doc = include_str!("../README.md")]

/// The trainer that search trials run.
pub use ode_train as train;
