//! Raising this process's open-file limit (RLIMIT_NOFILE) so 10,000+ sockets fit.

use rustix::process::{getrlimit, setrlimit, Resource, Rlimit};

/// Raises the soft nofile limit to the hard one and says what happened, one line for the
/// operator. Failing to raise it is not fatal: small runs do not need it.
pub(crate) fn raise() -> String {
    let before = getrlimit(Resource::Nofile);
    let wanted = Rlimit {
        current: before.maximum,
        maximum: before.maximum,
    };
    if before.current == before.maximum {
        return format!(
            "nofile limit already at its hard limit ({})",
            show(before.maximum)
        );
    }
    match setrlimit(Resource::Nofile, wanted) {
        Ok(()) => format!(
            "raised nofile limit from {} to {}",
            show(before.current),
            show(before.maximum)
        ),
        Err(e) => format!(
            "could not raise nofile limit above {} (hard {}): {e}; large runs may fail with EMFILE",
            show(before.current),
            show(before.maximum)
        ),
    }
}

/// The soft nofile limit now in force (`None` = unlimited).
pub(crate) fn current() -> Option<u64> {
    getrlimit(Resource::Nofile).current
}

fn show(limit: Option<u64>) -> String {
    limit.map_or_else(|| "unlimited".to_owned(), |n| n.to_string())
}
