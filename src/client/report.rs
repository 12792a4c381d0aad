//! `earshot listen --report FILE`: the evidence of a failover test for a change ticket, as one
//! JSON document: which instances served the stream when, every interruption with its length
//! and the audio it cost, and the run's totals and outcome.

use std::path::Path;

use serde_json::{Value, json};

use crate::client::console::{self, Interruption, Summary};
use crate::error::{Error, Result};

/// A connection that delivered the stream, for the timeline of instances.
#[derive(Debug, Clone)]
pub struct Served {
    pub connection: u64,
    pub instance: String,
    /// When its `hello` arrived, ms since the epoch.
    pub connected_unix_ms: u64,
}

/// What the report is made of.
pub struct Report<'a> {
    pub url: &'a str,
    pub started_unix_ms: u64,
    pub served: &'a [Served],
    pub interruptions: &'a [Interruption],
    pub summary: &'a Summary,
}

impl Report<'_> {
    pub fn to_json(&self) -> Value {
        let s = self.summary;
        let lost: Vec<&Interruption> = self.interruptions.iter().filter(|i| i.audible()).collect();
        json!({
            "report": "earshot listen failover report",
            "version": 1,
            "url": self.url,
            "started_t": self.started_unix_ms,
            "ended_t": crate::audio::unix_millis_now(),
            "elapsed_s": console::round(s.elapsed_s, 3),
            "outcome": s.outcome,
            "exit_code": s.exit_code,
            "instances": self.served.iter().map(|c| json!({
                "connection": c.connection,
                "instance": c.instance,
                "connected_t": c.connected_unix_ms,
            })).collect::<Vec<_>>(),
            "instance_changes": self.interruptions.iter()
                .filter(|i| i.instance_before != i.instance_after)
                .count(),
            "planned_moves": self.interruptions.iter().filter(|i| i.planned).count(),
            "interruptions_with_loss": lost.len(),
            "lost_ms_total": console::round(lost.iter().map(|i| i.lost_ms).sum(), 1),
            "lost_ms_max": lost.iter().map(|i| i.lost_ms).fold(0.0, f64::max),
            "interruptions": self.interruptions.iter()
                .map(console::interruption_json)
                .collect::<Vec<_>>(),
            "totals": console::totals_json(&s.totals),
            "latency_ms": console::latency_json(s.latency),
        })
    }

    /// Writes the report, replacing the file whole (a half-written report is worse than none).
    pub fn write(&self, path: &Path) -> Result<()> {
        let text = serde_json::to_string_pretty(&self.to_json()).expect("JSON values serialize");
        let partial = path.with_extension("partial");
        std::fs::write(&partial, text + "\n")
            .and_then(|()| std::fs::rename(&partial, path))
            .map_err(|e| Error::io(format!("{}: cannot write the report", path.display()), e))
    }
}
