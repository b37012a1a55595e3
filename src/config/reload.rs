//! What a reload changes: a newly loaded configuration compared with the running one, section by
//! section. Settings that are read once at start-up (the listeners, CORS, logging, the demo, the
//! audit writer) keep their running values and are reported as needing a restart; everything else
//! applies at once.

use super::Config;

/// A newly loaded configuration, made ready to replace the running one.
#[derive(Debug, Clone)]
pub struct Reload {
    /// What to run from now on: the new configuration, except that the start-up-only settings
    /// keep their running values (so the running configuration always says what runs).
    pub config: Config,
    /// Sections with a setting that changed and applies now, in file order.
    pub changed: Vec<&'static str>,
    /// Settings that changed in the file but take effect only after a restart.
    pub restart_required: Vec<&'static str>,
}

impl Reload {
    /// Whether the vendor side (adapters, lanes, canaries, the failover driver) must be rebuilt:
    /// a vendor or a delivery or failover knob changed. `vendors.bulk_channels` alone does not
    /// need it (the publish path reads it).
    pub fn rebuilds_vendors(&self, running: &Config) -> bool {
        let (old, new) = (&running.vendors, &self.config.vendors);
        old.vendors != new.vendors || old.failover != new.failover
    }
}

impl Config {
    /// Compares `new` with this (running) configuration.
    pub fn reload(&self, mut new: Config) -> Reload {
        let mut restart_required = Vec::new();
        let mut keep = |key: &'static str, differs: bool| {
            if differs {
                restart_required.push(key);
            }
            differs
        };
        let old = self;
        // Every section is either compared below or kept for a restart. Listed without `..`, so
        // a new section does not compile until it is given its place here.
        let Config {
            server: _,
            log: _,
            publish: _,
            history: _,
            channels: _,
            subscribers: _,
            auth: _,
            demo: _,
            vendors: _,
            audit: _,
            engine: _,
            max_maintenance_window: _,
            // Applied at once: a new secret is checked from the next request on.
            apps: _,
            // Applied at once: keys, quotas and channel owners from the next request on; a
            // tenant's own vendors are rebuilt with the vendor side.
            tenant_defaults: _,
            tenants: _,
        } = old;
        if keep("engine", old.engine != new.engine) {
            new.engine = old.engine.clone();
        }
        if keep("server.listen", old.server.listen != new.server.listen) {
            new.server.listen = old.server.listen;
        }
        if keep(
            "server.admin_listen",
            old.server.admin_listen != new.server.admin_listen,
        ) {
            new.server.admin_listen = old.server.admin_listen;
        }
        if keep(
            "server.cors_allow_origins",
            old.server.cors_allow_origins != new.server.cors_allow_origins,
        ) {
            new.server.cors_allow_origins = old.server.cors_allow_origins.clone();
        }
        if keep(
            "server.admin_cors_allow_origins",
            old.server.admin_cors_allow_origins != new.server.admin_cors_allow_origins,
        ) {
            new.server.admin_cors_allow_origins = old.server.admin_cors_allow_origins.clone();
        }
        // The caps are fixed when the listeners' admissions are built; the deadlines are read at
        // each accept and apply to new connections.
        let (a, b) = (old.server.connections, &mut new.server.connections);
        for (key, old_cap, new_cap) in [
            (
                "server.max_connections",
                a.max_connections,
                &mut b.max_connections,
            ),
            (
                "server.max_connections_per_address",
                a.max_connections_per_address,
                &mut b.max_connections_per_address,
            ),
            (
                "server.admin_max_connections",
                a.admin_max_connections,
                &mut b.admin_max_connections,
            ),
        ] {
            if keep(key, old_cap != *new_cap) {
                *new_cap = old_cap;
            }
        }
        keep("log.filter", old.log.filter != new.log.filter);
        keep("log.format", old.log.format != new.log.format);
        new.log = old.log.clone();
        keep("demo.enabled", old.demo.enabled != new.demo.enabled);
        keep(
            "demo.state_file",
            old.demo.state_file != new.demo.state_file,
        );
        keep("demo.pusher_js", old.demo.pusher_js != new.demo.pusher_js);
        new.demo = old.demo.clone();
        let (a, b) = (&old.audit, &new.audit);
        keep("audit.dir", a.dir != b.dir);
        keep("audit.queue", a.queue != b.queue);
        keep(
            "audit.max_segment_bytes",
            a.max_segment_bytes != b.max_segment_bytes,
        );
        keep("audit.max_segments", a.max_segments != b.max_segments);
        keep("audit.max_age_secs", a.max_age != b.max_age);
        keep(
            "audit.flush_interval_ms",
            a.flush_interval != b.flush_interval,
        );
        new.audit = old.audit.clone();

        let mut changed = Vec::new();
        for (section, differs) in [
            ("server", old.server != new.server),
            ("publish", old.publish != new.publish),
            ("history", old.history != new.history),
            ("channels", old.channels != new.channels),
            ("subscribers", old.subscribers != new.subscribers),
            ("auth", old.auth != new.auth),
            ("vendors", old.vendors != new.vendors),
            (
                "maintenance",
                old.max_maintenance_window != new.max_maintenance_window,
            ),
            (
                "tenants",
                old.tenants != new.tenants || old.tenant_defaults != new.tenant_defaults,
            ),
        ] {
            if differs {
                changed.push(section);
            }
        }
        Reload {
            config: new,
            changed,
            restart_required,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn load(file: &str) -> Config {
        Config::load(Some(file), &|_| None).unwrap()
    }

    #[test]
    fn the_same_file_changes_nothing() {
        let running = load("[history]\nmax_events = 5\n");
        let reload = running.reload(running.clone());
        assert!(reload.changed.is_empty() && reload.restart_required.is_empty());
        assert!(!reload.rebuilds_vendors(&running));
        assert_eq!(reload.config, running);
    }

    #[test]
    fn live_sections_are_listed_in_file_order() {
        let running = Config::embedded();
        let new = load(
            "[auth]\npublisher_keys = [\"key-two-0123456789\"]\n[publish]\nmax_body_bytes = 10\n[server]\ndrain_window_ms = 1\n",
        );
        let reload = running.reload(new);
        assert_eq!(reload.changed, vec!["server", "publish", "auth"]);
        assert!(reload.restart_required.is_empty());
        assert_eq!(reload.config.publish.max_body_bytes, 10);
        assert_eq!(reload.config.server.drain_window.as_millis(), 1);
    }

    #[test]
    fn start_up_settings_keep_their_running_values_and_ask_for_a_restart() {
        let running = Config::embedded();
        let new = load(
            "[server]\nlisten = \"127.0.0.1:1\"\n[log]\nformat = \"json\"\n[audit]\ndir = \"/elsewhere\"\n[demo]\nenabled = true\n",
        );
        let reload = running.reload(new);
        assert_eq!(
            reload.restart_required,
            vec!["server.listen", "log.format", "demo.enabled", "audit.dir"]
        );
        assert!(reload.changed.is_empty(), "{:?}", reload.changed);
        assert_eq!(reload.config, running, "what runs is what the config says");
    }

    #[test]
    fn only_vendor_and_failover_knobs_rebuild_the_vendor_side() {
        let running = Config::embedded();
        let bulk = running.reload(load("[vendors]\nbulk_channels = [\"reports.*\"]\n"));
        assert_eq!(bulk.changed, vec!["vendors"]);
        assert!(!bulk.rebuilds_vendors(&running));
        let signal = running.reload(load("[vendors]\nsignal_only = [\"clinic-*\"]\n"));
        assert_eq!(signal.changed, vec!["vendors"]);
        assert!(!signal.rebuilds_vendors(&running));
        assert_eq!(signal.config.vendors.signal_only, vec!["clinic-*"]);
        let threshold = running.reload(load("[vendors]\nrecover_after = 9\n"));
        assert!(threshold.rebuilds_vendors(&running));
        let url = running.reload(load(
            "[vendors]\nurls = [\"webhook+http://127.0.0.1:1/hook?secret=s3cret-s3cret\"]\n",
        ));
        assert!(url.rebuilds_vendors(&running));
    }
}
