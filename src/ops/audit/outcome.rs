//! What one call on the audit files did: entries written and lost, segments rotated and deleted,
//! and the failed file operation that stopped it, for the writer's counters and reports.

use std::fmt;
use std::io;

/// The file operation that failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Step {
    CreateDir,
    Open,
    Write,
    Flush,
    Rotate,
    Prune,
}

impl fmt::Display for Step {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::CreateDir => "create the audit directory",
            Self::Open => "open the active segment",
            Self::Write => "append to the active segment",
            Self::Flush => "flush the active segment",
            Self::Rotate => "rotate the active segment",
            Self::Prune => "prune old segments",
        })
    }
}

/// A failed file operation.
#[derive(Debug, thiserror::Error)]
#[error("could not {step}: {source}")]
pub(super) struct Failure {
    pub(super) step: Step,
    #[source]
    pub(super) source: io::Error,
}

pub(super) fn at(step: Step) -> impl FnOnce(io::Error) -> Failure {
    move |source| Failure { step, source }
}

/// What one call did, for the writer's counters and reports.
#[derive(Debug, Default)]
pub(super) struct Outcome {
    /// Entries that reached the file (flushed).
    pub(super) written: u64,
    /// Entries accepted but thrown away because a write, flush or rotation failed; some of them
    /// may have reached the file before the failure.
    pub(super) lost: u64,
    /// The failure that stopped this call's writing, if one did.
    pub(super) failure: Option<Failure>,
    /// Housekeeping that failed without stopping the writing (pruning).
    pub(super) housekeeping: Option<Failure>,
    /// Segments rotated and segments deleted.
    pub(super) rotated: u64,
    pub(super) deleted: usize,
}
