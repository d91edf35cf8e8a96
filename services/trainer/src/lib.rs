//! trainer: the ML pipeline, one subcommand per step (`extract`, `validate`, `train`,
//! `evaluate`), each an MLflow run. Pure parts: [`snapshot`], [`validate`], [`train`],
//! [`plot`], [`pipeline::decide`]; the I/O is in [`pipeline::Pipeline`].

pub mod config;
pub mod pipeline;
pub mod plot;
pub mod snapshot;
pub mod train;
pub mod validate;
