#![doc = include_str!("../README.md")]

/// The trainer that search trials run.
pub use ode_train as train;

pub mod space;
pub mod strategy;

pub use space::{Distribution, SearchSpace, SpaceError};
pub use strategy::{Params, grid, random_trial};
