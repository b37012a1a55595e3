//! An unauthenticated flood of admin calls is counted, and sampled into the audit trail: it
//! cannot rotate the trail (and the operator's entries in it) away.

use serde_json::json;

use crate::support::*;

const ADMIN: &str = "hostile-admin-token-0123456789";
const FLOOD: usize = 300;

#[tokio::test]
async fn refused_admin_calls_are_counted_and_sampled_into_the_trail() {
    let s = Server::with(&format!(
        "[auth]\nsubscribe = \"none\"\nadmin_tokens = [{{ name = \"ops\", token = \"{ADMIN}\" }}]\n"
    ))
    .await;
    let (status, _) = s
        .admin_call(
            reqwest::Method::PUT,
            "/admin/mode",
            Some(ADMIN),
            Some(json!({"mode": "self", "reason": "before the flood", "expires_in": 600})),
        )
        .await;
    assert_eq!(status, 200);
    for _ in 0..FLOOD {
        let (status, v) = s
            .admin_call(reqwest::Method::GET, "/admin/status", Some("guess"), None)
            .await;
        assert_eq!(status, 401);
        assert_eq!(v["error"]["code"], "unauthorized");
    }
    s.state.audit.flush().await.unwrap();
    let (status, v) = s
        .admin_call(
            reqwest::Method::GET,
            "/admin/audit?limit=1000",
            Some(ADMIN),
            None,
        )
        .await;
    assert_eq!(status, 200, "{v}");
    let entries = v["entries"].as_array().unwrap();
    let rejected: Vec<_> = entries
        .iter()
        .filter(|e| e["action"] == "admin_rejected")
        .collect();
    assert_eq!(rejected.len(), 1, "one entry per 10 s window, not {FLOOD}");
    assert_eq!(rejected[0]["details"]["refusals"], 1);
    assert!(
        entries.iter().any(|e| e["action"] == "mode_changed"),
        "the operator's entry is still there"
    );
    let metrics = s.metrics_text().await;
    let counted: u64 = metrics
        .lines()
        .find_map(|l| l.strip_prefix("understudy_admin_refused_total "))
        .expect("the refusal counter")
        .trim()
        .parse()
        .unwrap();
    // The counter is the test process's: other tests' refusals may add to it.
    assert!(counted >= FLOOD as u64, "{counted}");
}
