//! Planned maintenance: windows in which a forced mode (usually `self`) replaces the vendor route,
//! scheduled ahead for a vendor's announced maintenance. The [`Schedule`] is plain data with its
//! rules; [`run`] is the one task that starts each window on time by setting a forced mode that
//! expires at the window's end, so the end needs no second action.

use std::sync::Arc;
use std::time::Duration;

use parking_lot::Mutex;
use serde::{Deserialize, Serialize};
use serde_json::json;
use tokio::sync::Notify;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::audit::{AuditAction, AuditEntry, AuditHandle};
use crate::core::event::now_ms;
use crate::failover::{Failover, Mode, ModeSetting};

/// One window, times in milliseconds since the Unix epoch.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Window {
    pub id: u64,
    pub start: u64,
    pub end: u64,
    pub mode: Mode,
    pub reason: String,
    pub set_by: String,
    /// Whether the window's mode has been applied.
    pub started: bool,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum MaintenanceError {
    #[error("end must be after start")]
    EndsBeforeStart,
    #[error("the window has already ended; schedule one that ends in the future")]
    InThePast,
    #[error("the window is longer than the maximum of {0} seconds (maintenance.max_window_secs)")]
    TooLong(u64),
    #[error("the window overlaps window {0}; cancel it or pick other times")]
    Overlaps(u64),
    #[error("mode {0} is not a maintenance mode; use vendor, self or poll")]
    BadMode(&'static str),
    #[error("reason must say why (1 to 500 characters)")]
    NoReason,
    #[error("no maintenance window {0}")]
    NotFound(u64),
    #[error("at most {0} windows may be scheduled")]
    Full(usize),
}

/// A window as an operator asks for it.
#[derive(Debug, Clone, Copy)]
pub struct Asked<'a> {
    pub start: u64,
    pub end: u64,
    pub mode: Mode,
    pub reason: &'a str,
    pub set_by: &'a str,
}

/// Windows still to come or in progress, in start order.
#[derive(Debug, Default, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Schedule {
    windows: Vec<Window>,
    next_id: u64,
}

/// Windows that may be scheduled at once.
pub(crate) const MAX_WINDOWS: usize = 100;

/// What the schedule asks to happen now.
#[derive(Debug, PartialEq, Eq)]
pub enum Due {
    Start(Window),
    End(Window),
}

impl Schedule {
    pub fn add(
        &mut self,
        asked: Asked<'_>,
        now: u64,
        max_len: Duration,
    ) -> Result<Window, MaintenanceError> {
        let Asked {
            start,
            end,
            mode,
            reason,
            set_by,
        } = asked;
        if mode == Mode::Auto {
            return Err(MaintenanceError::BadMode("auto"));
        }
        let reason = reason.trim();
        if reason.is_empty() || reason.chars().count() > 500 {
            return Err(MaintenanceError::NoReason);
        }
        if end <= start {
            return Err(MaintenanceError::EndsBeforeStart);
        }
        if end <= now {
            return Err(MaintenanceError::InThePast);
        }
        if end - start > max_len.as_millis() as u64 {
            return Err(MaintenanceError::TooLong(max_len.as_secs()));
        }
        if let Some(w) = self.windows.iter().find(|w| start < w.end && w.start < end) {
            return Err(MaintenanceError::Overlaps(w.id));
        }
        if self.windows.len() >= MAX_WINDOWS {
            return Err(MaintenanceError::Full(MAX_WINDOWS));
        }
        self.next_id += 1;
        let window = Window {
            id: self.next_id,
            start,
            end,
            mode,
            reason: reason.to_string(),
            set_by: set_by.to_string(),
            started: false,
        };
        self.windows.push(window.clone());
        self.windows.sort_by_key(|w| w.start);
        Ok(window)
    }

    pub fn cancel(&mut self, id: u64) -> Result<Window, MaintenanceError> {
        let i =
            (self.windows.iter().position(|w| w.id == id)).ok_or(MaintenanceError::NotFound(id))?;
        Ok(self.windows.remove(i))
    }

    /// Takes another node's copy of the schedule, keeping which windows this node has already
    /// started (each node applies a window's mode itself, on time).
    pub fn replace_keeping_started(&mut self, mut shared: Schedule) {
        for w in &mut shared.windows {
            w.started = self
                .windows
                .iter()
                .any(|mine| mine.id == w.id && mine.started);
        }
        *self = shared;
    }

    /// Whether two copies hold the same windows, whichever each node has started.
    pub fn same_plan(&self, other: &Schedule) -> bool {
        let plan = |w: &Window| {
            (
                w.id,
                w.start,
                w.end,
                w.mode,
                w.reason.clone(),
                w.set_by.clone(),
            )
        };
        self.next_id == other.next_id
            && self
                .windows
                .iter()
                .map(plan)
                .eq(other.windows.iter().map(plan))
    }

    pub fn list(&self) -> Vec<Window> {
        self.windows.clone()
    }

    /// The next start or end that is due at `now`, marking it handled.
    pub fn take_due(&mut self, now: u64) -> Option<Due> {
        if let Some(i) = self.windows.iter().position(|w| w.end <= now) {
            let w = self.windows.remove(i);
            return Some(Due::End(w));
        }
        let w = self
            .windows
            .iter_mut()
            .find(|w| !w.started && w.start <= now)?;
        w.started = true;
        Some(Due::Start(w.clone()))
    }

    /// When the next start or end falls, if any.
    pub fn next_at(&self) -> Option<u64> {
        self.windows
            .iter()
            .map(|w| if w.started { w.end } else { w.start })
            .min()
    }
}

/// The schedule shared by the admin API and the task.
#[derive(Debug, Clone, Default)]
pub struct Maintenance {
    pub schedule: Arc<Mutex<Schedule>>,
    /// Wakes the task when the schedule changes.
    pub changed: Arc<Notify>,
}

/// Applies windows on time. A window starts by forcing its mode with an expiry at its end.
pub(crate) async fn run(
    maintenance: Maintenance,
    failover: Failover,
    audit: AuditHandle,
    cancel: CancellationToken,
) {
    loop {
        loop {
            let due = maintenance.schedule.lock().take_due(now_ms());
            let Some(due) = due else { break };
            apply(due, &failover, &audit);
        }
        let wait = maintenance
            .schedule
            .lock()
            .next_at()
            .map(|at| Duration::from_millis(at.saturating_sub(now_ms())));
        tokio::select! {
            () = cancel.cancelled() => return,
            () = maintenance.changed.notified() => {}
            () = sleep_or_forever(wait) => {}
        }
    }
}

async fn sleep_or_forever(wait: Option<Duration>) {
    match wait {
        // The wall clock may jump; look again at least every minute.
        Some(d) => tokio::time::sleep(d.min(Duration::from_secs(60))).await,
        None => std::future::pending().await,
    }
}

fn apply(due: Due, failover: &Failover, audit: &AuditHandle) {
    match due {
        Due::Start(w) => {
            let left = Duration::from_millis(w.end.saturating_sub(now_ms()));
            tracing::warn!(
                id = w.id,
                mode = w.mode.as_str(),
                "maintenance window started"
            );
            failover.set_mode(ModeSetting::forced(
                w.mode,
                &format!("maintenance: {}", w.reason),
                &w.set_by,
                Some(Instant::now() + left),
            ));
            audit.record(
                AuditEntry::system(AuditAction::MaintenanceStarted)
                    .with_details(json!({"id": w.id, "mode": w.mode.as_str(), "end": w.end}))
                    .with_reason(w.reason),
            );
        }
        Due::End(w) => {
            tracing::warn!(id = w.id, "maintenance window ended");
            audit.record(
                AuditEntry::system(AuditAction::MaintenanceEnded)
                    .with_details(json!({"id": w.id}))
                    .with_reason(w.reason),
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const DAY: Duration = Duration::from_secs(86_400);

    fn asked(start: u64, end: u64, mode: Mode, reason: &str) -> Asked<'_> {
        Asked {
            start,
            end,
            mode,
            reason,
            set_by: "ops",
        }
    }

    fn add(s: &mut Schedule, start: u64, end: u64) -> Result<Window, MaintenanceError> {
        s.add(
            asked(start, end, Mode::SelfHosted, "vendor maintenance"),
            1_000,
            DAY,
        )
    }

    #[test]
    fn refuses_bad_windows_with_the_reason() {
        let mut s = Schedule::default();
        assert_eq!(
            add(&mut s, 5_000, 4_000),
            Err(MaintenanceError::EndsBeforeStart)
        );
        assert_eq!(add(&mut s, 100, 500), Err(MaintenanceError::InThePast));
        assert_eq!(
            add(&mut s, 2_000, 2_000 + DAY.as_millis() as u64 + 1),
            Err(MaintenanceError::TooLong(86_400))
        );
        let first = add(&mut s, 10_000, 20_000).unwrap();
        assert_eq!(
            add(&mut s, 15_000, 25_000),
            Err(MaintenanceError::Overlaps(first.id))
        );
        assert_eq!(
            add(&mut s, 5_000, 10_001),
            Err(MaintenanceError::Overlaps(first.id))
        );
        assert!(
            add(&mut s, 20_000, 30_000).is_ok(),
            "touching windows do not overlap"
        );
        assert_eq!(
            s.add(asked(30_000, 40_000, Mode::Auto, "x"), 1_000, DAY),
            Err(MaintenanceError::BadMode("auto"))
        );
        assert_eq!(
            s.add(asked(30_000, 40_000, Mode::Poll, " "), 1_000, DAY),
            Err(MaintenanceError::NoReason)
        );
    }

    #[test]
    fn starts_and_ends_in_order() {
        let mut s = Schedule::default();
        let a = add(&mut s, 10_000, 20_000).unwrap();
        let b = add(&mut s, 30_000, 40_000).unwrap();
        assert_eq!(s.next_at(), Some(10_000));
        assert_eq!(s.take_due(9_999), None);
        assert!(matches!(s.take_due(10_000), Some(Due::Start(w)) if w.id == a.id));
        assert_eq!(s.take_due(10_001), None, "a start is taken once");
        assert_eq!(s.next_at(), Some(20_000));
        assert!(matches!(s.take_due(20_000), Some(Due::End(w)) if w.id == a.id));
        assert!(matches!(s.take_due(30_000), Some(Due::Start(w)) if w.id == b.id));
        assert_eq!(s.cancel(b.id).unwrap().id, b.id);
        assert_eq!(s.cancel(b.id), Err(MaintenanceError::NotFound(b.id)));
        assert_eq!(s.next_at(), None);
    }
}
