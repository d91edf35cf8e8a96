//! trainer: the ML pipeline, one subcommand per step (`extract`, `validate`, `train`,
//! `evaluate`), each an MLflow run. Pure parts: [`snapshot`], [`validate`], [`train`] (the
//! one-hour candidates), [`horizons`] (longer horizons and intervals), [`plot`],
//! [`pipeline::decide`]; the I/O is in [`pipeline::Pipeline`], one module per
//! step. [`failure`] tells a transient failure (exit 75, retried) from a final one (exit 1).

pub mod config;
pub mod failure;
pub mod horizons;
pub mod pipeline;
pub mod plot;
pub mod snapshot;
pub mod train;
pub mod validate;
