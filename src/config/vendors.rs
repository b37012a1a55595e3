//! The `[vendors]` section: vendor URLs in priority order and every delivery and failover knob,
//! validated into the failover module's typed configuration.

use std::time::Duration;

use serde::Deserialize;

use crate::core::ChannelName;
use crate::failover::{CanaryConfig, FailoverConfig, RouteConfig, Thresholds, WindowConfig};
use crate::upstream::http::HttpConfig;
use crate::upstream::lanes::{LaneConfig, RetryBudgetConfig};
use crate::upstream::tls::CaBundle;
use crate::upstream::VendorConfig;

/// Vendors in priority order and how events are forwarded and judged.
#[derive(Debug, Clone, PartialEq)]
pub struct Vendors {
    pub vendors: Vec<VendorConfig>,
    /// Channel patterns (exact, or prefix ending in `*`) whose events take the bulk lane.
    pub bulk_channels: Vec<String>,
    /// Channel patterns (exact, or prefix ending in `*`) whose events reach vendors as a signal
    /// `{type, channel, epoch, seq, id}` only; clients fetch the bodies from understudy's
    /// history. Validated with [`ChannelName::check_pattern`].
    pub signal_only: Vec<String>,
    /// Events go on public vendor channels that anyone with the app key can read
    /// (`vendors.public_channels`). Default `false`: Pusher `private-` channels, authorized by
    /// `POST /v1/vendor/auth`.
    pub public_channels: bool,
    pub failover: FailoverConfig,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawVendors {
    pub(super) urls: Vec<String>,
    /// PEM CA bundle trusted for vendor TLS besides the platform's; empty: none.
    pub(super) ca_file: String,
    bulk_channels: Vec<String>,
    signal_only: Vec<String>,
    public_channels: bool,
    connect_timeout_ms: u64,
    request_timeout_ms: u64,
    realtime_queue: usize,
    bulk_queue: usize,
    realtime_in_flight: usize,
    bulk_in_flight: usize,
    max_queue_age_ms: u64,
    retry_budget_ratio: f64,
    heartbeat_ms: u64,
    canary: bool,
    canary_interval_ms: u64,
    canary_deadline_ms: u64,
    window_ms: u64,
    window_min_requests: usize,
    window_error_ratio: f64,
    window_consecutive_failures: usize,
    window_slow_p99_ms: u64,
    trip_after_bad_windows: u32,
    trip_after_lost_canaries: u32,
    down_after: u32,
    recover_after: u32,
    min_dwell_ms: u64,
    move_back_jitter_ms: u64,
    move_away_jitter_ms: u64,
}

impl std::fmt::Debug for RawVendors {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Vendor URLs carry secrets.
        f.debug_struct("RawVendors")
            .field("urls", &self.urls.len())
            .finish_non_exhaustive()
    }
}

/// Longest period or deadline of a check that must keep happening: an hour.
const MAX_INTERVAL_MS: u64 = 3_600_000;
/// Longest dwell, jitter or heartbeat: a day.
const MAX_DAY_MS: u64 = 86_400_000;

fn interval(key: &str, v: u64, max: u64, errs: &mut Vec<String>) {
    if !(1..=max).contains(&v) {
        errs.push(format!("{key} = {v} must be between 1 and {max}"));
    }
}

/// One URL of a tenant's own vendors, read as `vendors.urls` are (the same channel privacy).
pub(super) fn tenant_vendor(url: &str, public_channels: bool) -> Result<VendorConfig, String> {
    match VendorConfig::from_url(url) {
        Ok(VendorConfig::Pusher(mut p)) => {
            p.private_channels = !public_channels;
            Ok(VendorConfig::Pusher(p))
        }
        Ok(v) => Ok(v),
        Err(e) => Err(e.to_string()),
    }
}

impl RawVendors {
    pub(super) fn validate(self, errs: &mut Vec<String>) -> Vendors {
        let ms = Duration::from_millis;
        let mut vendors = Vec::new();
        for (i, url) in self.urls.iter().enumerate() {
            match VendorConfig::from_url(url) {
                Ok(VendorConfig::Pusher(mut p)) => {
                    p.private_channels = !self.public_channels;
                    vendors.push(VendorConfig::Pusher(p));
                }
                Ok(v) => vendors.push(v),
                Err(e) => errs.push(format!("vendors.urls[{i}]: {e}")),
            }
        }
        // Read now, so a missing or wrong file stops start-up (or a reload) with its problem
        // named, instead of failing every handshake later.
        let ca = match self.ca_file.trim() {
            "" => None,
            path => CaBundle::read(std::path::Path::new(path))
                .map_err(|e| errs.push(format!("vendors.ca_file: {e}")))
                .ok(),
        };
        for (i, pattern) in self.signal_only.iter().enumerate() {
            if let Err(e) = ChannelName::check_pattern(pattern) {
                errs.push(format!(
                    "vendors.signal_only[{i}] = {pattern:?}: {e}; write a channel name or a prefix ending in *"
                ));
            }
        }
        for (key, v) in [
            ("vendors.realtime_queue", self.realtime_queue),
            ("vendors.bulk_queue", self.bulk_queue),
            ("vendors.realtime_in_flight", self.realtime_in_flight),
            ("vendors.bulk_in_flight", self.bulk_in_flight),
        ] {
            if v == 0 {
                errs.push(format!("{key} must be greater than 0"));
            }
        }
        // Intervals that drive timers: 0 would spin or panic a timer (tokio refuses a zero
        // period), and more than an hour means the check never happens in practice.
        if self.canary {
            for (key, v) in [
                ("vendors.canary_interval_ms", self.canary_interval_ms),
                ("vendors.canary_deadline_ms", self.canary_deadline_ms),
            ] {
                interval(key, v, MAX_INTERVAL_MS, errs);
            }
        }
        for (key, v, max) in [
            ("vendors.window_ms", self.window_ms, MAX_INTERVAL_MS),
            (
                "vendors.connect_timeout_ms",
                self.connect_timeout_ms,
                MAX_INTERVAL_MS,
            ),
            (
                "vendors.request_timeout_ms",
                self.request_timeout_ms,
                MAX_INTERVAL_MS,
            ),
            (
                "vendors.max_queue_age_ms",
                self.max_queue_age_ms,
                MAX_INTERVAL_MS,
            ),
            (
                "vendors.window_slow_p99_ms",
                self.window_slow_p99_ms,
                MAX_INTERVAL_MS,
            ),
            ("vendors.min_dwell_ms", self.min_dwell_ms, MAX_DAY_MS),
        ] {
            interval(key, v, max, errs);
        }
        for (key, v) in [
            ("vendors.heartbeat_ms", self.heartbeat_ms),
            ("vendors.move_back_jitter_ms", self.move_back_jitter_ms),
            ("vendors.move_away_jitter_ms", self.move_away_jitter_ms),
        ] {
            // 0 is allowed here: no heartbeat, no jitter.
            if v > MAX_DAY_MS {
                errs.push(format!("{key} = {v} must be at most {MAX_DAY_MS} (a day)"));
            }
        }
        for (key, v) in [
            ("vendors.retry_budget_ratio", self.retry_budget_ratio),
            ("vendors.window_error_ratio", self.window_error_ratio),
        ] {
            if !(0.0..=1.0).contains(&v) {
                errs.push(format!("{key} = {v} must be between 0 and 1"));
            }
        }
        let defaults = FailoverConfig::default();
        let failover = FailoverConfig {
            http: HttpConfig {
                connect_timeout: ms(self.connect_timeout_ms),
                request_timeout: ms(self.request_timeout_ms),
                ca,
                ..defaults.http
            },
            lanes: LaneConfig {
                realtime_queue: self.realtime_queue,
                bulk_queue: self.bulk_queue,
                realtime_in_flight: self.realtime_in_flight,
                bulk_in_flight: self.bulk_in_flight,
                max_age: ms(self.max_queue_age_ms),
                request_timeout: ms(self.request_timeout_ms),
                ..defaults.lanes
            },
            retry_budget: RetryBudgetConfig {
                ratio: self.retry_budget_ratio,
                ..defaults.retry_budget
            },
            window: WindowConfig {
                span: ms(self.window_ms),
                min_requests: self.window_min_requests,
                error_ratio: self.window_error_ratio,
                consecutive_failures: self.window_consecutive_failures,
                slow_p99: ms(self.window_slow_p99_ms),
                ..defaults.window
            },
            thresholds: Thresholds {
                trip_after_bad_windows: self.trip_after_bad_windows,
                trip_after_lost_canaries: self.trip_after_lost_canaries,
                down_after: self.down_after,
                recover_after: self.recover_after,
                min_dwell: ms(self.min_dwell_ms),
            },
            canary: self.canary.then(|| CanaryConfig {
                interval: ms(self.canary_interval_ms),
                deadline: ms(self.canary_deadline_ms),
                ..CanaryConfig::default()
            }),
            route: RouteConfig {
                move_back_jitter: ms(self.move_back_jitter_ms),
                move_away_jitter: ms(self.move_away_jitter_ms),
            },
            heartbeat: (self.heartbeat_ms > 0).then(|| ms(self.heartbeat_ms)),
            ..defaults
        };
        Vendors {
            vendors,
            bulk_channels: self.bulk_channels,
            signal_only: self.signal_only,
            public_channels: self.public_channels,
            failover,
        }
    }
}

#[cfg(test)]
mod tests {
    use crate::config::Config;

    #[test]
    fn signal_only_patterns_are_checked_like_token_scopes() {
        let load = |file: &str| Config::load(Some(file), &|_| None);
        let ok = load("[vendors]\nsignal_only = [\"clinic-*\", \"lobby\", \"*\"]\n").unwrap();
        assert_eq!(ok.vendors.signal_only, vec!["clinic-*", "lobby", "*"]);
        let err = load("[vendors]\nsignal_only = [\"clinic-*\", \"cl*nic\", \"\"]\n")
            .unwrap_err()
            .0;
        assert_eq!(err.len(), 2, "{err:?}");
        assert!(
            err[0].starts_with("vendors.signal_only[1] = \"cl*nic\": "),
            "{err:?}"
        );
        assert!(
            err[1].starts_with("vendors.signal_only[2] = \"\": "),
            "{err:?}"
        );
    }
}
