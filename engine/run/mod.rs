//! The run layer: what a front end (the CLI, the Python package) needs to carry out a run,
//! without knowing backends or scores: the device choice and its backends, scoring a set
//! of archs, searching with a score.

pub mod archs;
pub mod bench;
pub mod data;
pub mod device;
pub mod merge;
pub mod provenance;
pub mod score;
pub mod search;
pub mod search_report;

/// Why a run could not be carried out.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    /// The request is wrong as given (bad input, a device that cannot be had): nothing was
    /// done, and fixing the request fixes it (the CLI's exit 2).
    #[error(transparent)]
    Input(anyhow::Error),
    /// The device asked for cannot be had here (no driver, no such GPU, a build without
    /// its feature): nothing was done (the CLI's exit 2; a `RuntimeError` in Python).
    #[error(transparent)]
    Unavailable(anyhow::Error),
    /// Something failed while running (the CLI's exit 1).
    #[error(transparent)]
    Failed(anyhow::Error),
    /// The caller asked the run to stop (a signal, Ctrl-C): what was written stands, and
    /// a results file can be resumed.
    #[error("stopped before the end")]
    Stopped,
}

impl RunError {
    pub fn input(e: impl Into<anyhow::Error>) -> RunError {
        RunError::Input(e.into())
    }

    pub fn unavailable(e: impl Into<anyhow::Error>) -> RunError {
        RunError::Unavailable(e.into())
    }

    pub fn failed(e: impl Into<anyhow::Error>) -> RunError {
        RunError::Failed(e.into())
    }
}
