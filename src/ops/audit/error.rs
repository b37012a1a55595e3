//! What can go wrong when reading the audit trail back or asking the writer for a flush. Writing
//! itself never returns an error to a caller: failures are counted and reported by the writer.

use std::io;
use std::path::PathBuf;

#[derive(Debug, thiserror::Error)]
pub enum AuditError {
    /// Listing or reading the segments failed.
    #[error("could not read the audit log in {dir}: {source}")]
    Read {
        dir: PathBuf,
        #[source]
        source: io::Error,
    },
    /// The blocking task doing the reading panicked or was cancelled.
    #[error("the audit read task failed: {0}")]
    ReadTask(#[from] tokio::task::JoinError),
    /// The writer task has ended, so nothing more will be written.
    #[error("the audit writer has stopped")]
    WriterStopped,
}
