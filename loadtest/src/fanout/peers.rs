//! Processes besides the server whose CPU belongs to a run (`--peer-pid NAME=PID`): in a
//! multi-node run, the node the publishers post to and the shared engine (Redis). They are
//! sampled at the same instants as the server and reported one by one.

use anyhow::{bail, Result};
use serde::Serialize;

use crate::proc_stats::{Proc, ProcSample};
use crate::report::per;

/// Peers a run may watch.
const MAX_PEERS: usize = 8;

/// One `--peer-pid NAME=PID`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Peer {
    /// A label for the report: ASCII letters, digits, `-` and `_`.
    pub(crate) name: String,
    pub(crate) pid: u32,
}

impl Peer {
    pub(crate) fn proc(&self) -> Proc {
        Proc::Pid(self.pid)
    }
}

/// Parses `NAME=PID`.
pub(crate) fn parse_peer(s: &str) -> Result<Peer, String> {
    let (name, pid) = s
        .split_once('=')
        .ok_or_else(|| "NAME=PID, e.g. redis=4242".to_owned())?;
    let name_ok = (1..=32).contains(&name.len())
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
    if !name_ok {
        return Err("NAME is 1-32 ASCII letters, digits, '-' or '_'".to_owned());
    }
    match pid.parse::<u32>() {
        Ok(pid) if pid > 0 => Ok(Peer {
            name: name.to_owned(),
            pid,
        }),
        _ => Err(format!("{pid:?} is not a pid")),
    }
}

/// Refuses repeated names and more than [`MAX_PEERS`].
pub(crate) fn check(peers: &[Peer]) -> Result<()> {
    if peers.len() > MAX_PEERS {
        bail!("at most {MAX_PEERS} --peer-pid");
    }
    for (i, p) in peers.iter().enumerate() {
        if peers[..i].iter().any(|q| q.name == p.name) {
            bail!("--peer-pid name {:?} given twice", p.name);
        }
    }
    Ok(())
}

/// Every peer read now, in order; an error names the peer that could not be read.
pub(crate) fn sample(peers: &[Peer]) -> Result<Vec<ProcSample>> {
    peers
        .iter()
        .map(|p| match p.proc().sample() {
            Ok(s) => Ok(s),
            Err(e) => bail!(
                "lost track of --peer-pid {}={} during the run (did it exit?): {e:#}",
                p.name,
                p.pid
            ),
        })
        .collect()
}

/// One peer's figures, over the same window as the server's.
#[derive(Debug, Serialize)]
pub(crate) struct PeerFigures {
    pub(crate) name: String,
    pub(crate) pid: u32,
    /// From the first publish to the last expected delivery (or the drain timeout).
    pub(crate) cpu_us: u64,
    pub(crate) cpu_us_per_delivered_event: Option<f64>,
    pub(crate) rss_subscribed_kib: u64,
    pub(crate) rss_after_kib: u64,
}

/// Figures from readings taken when everyone was subscribed, when delivery drained and at
/// the end.
pub(crate) fn figures(
    peers: &[Peer],
    subscribed: &[ProcSample],
    drained: &[ProcSample],
    after: &[ProcSample],
    delivered: u64,
) -> Vec<PeerFigures> {
    peers
        .iter()
        .zip(subscribed.iter().zip(drained).zip(after))
        .map(|(p, ((sub, drn), aft))| {
            let cpu_us = drn.cpu_us.saturating_sub(sub.cpu_us);
            PeerFigures {
                name: p.name.clone(),
                pid: p.pid,
                cpu_us,
                cpu_us_per_delivered_event: per(cpu_us, delivered),
                rss_subscribed_kib: sub.rss_kib,
                rss_after_kib: aft.rss_kib,
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_name_equals_pid() {
        assert_eq!(
            parse_peer("node-a=4242"),
            Ok(Peer {
                name: "node-a".to_owned(),
                pid: 4242
            })
        );
        for bad in [
            "4242",
            "=4242",
            "a=",
            "a=0",
            "a=-1",
            "a b=1",
            "a=1x",
            &"n".repeat(33),
        ] {
            assert!(parse_peer(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn refuses_repeated_names() {
        let a = parse_peer("a=1").unwrap();
        let b = parse_peer("b=2").unwrap();
        assert!(check(&[a.clone(), b.clone()]).is_ok());
        assert!(check(&[a.clone(), b, a]).is_err());
    }

    #[test]
    fn figures_are_per_window_and_per_event() {
        let s = |cpu_us, rss_kib| ProcSample { cpu_us, rss_kib };
        let peers = [parse_peer("redis=7").unwrap()];
        let f = figures(
            &peers,
            &[s(1_000, 10)],
            &[s(6_000, 12)],
            &[s(6_100, 13)],
            2_000,
        );
        assert_eq!(f[0].cpu_us, 5_000);
        assert_eq!(f[0].cpu_us_per_delivered_event, Some(2.5));
        assert_eq!((f[0].rss_subscribed_kib, f[0].rss_after_kib), (10, 13));
    }

    #[test]
    fn samples_a_live_process_and_names_a_dead_one() {
        let me = Peer {
            name: "me".to_owned(),
            pid: std::process::id(),
        };
        assert_eq!(sample(std::slice::from_ref(&me)).unwrap().len(), 1);
        let gone = Peer {
            name: "gone".to_owned(),
            pid: u32::MAX,
        };
        let err = sample(&[me, gone]).unwrap_err().to_string();
        assert!(err.contains("gone"), "{err}");
    }
}
