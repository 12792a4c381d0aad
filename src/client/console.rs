//! What `earshot listen` prints on standard output: one line per second and one per event, as
//! text for a person or as JSON lines for a script (fields documented in README, "Native client
//! and benchmarks").

use serde_json::{Value, json};

use crate::client::connection::Hello;

/// Latency percentiles of a period, ms.
#[derive(Debug, Clone, Copy)]
pub struct Latency {
    pub p50: f64,
    pub p99: f64,
    pub max: f64,
}

/// Counters since the start, shown on every line.
#[derive(Debug, Clone, Default)]
pub struct Totals {
    pub chunks: u64,
    pub bytes: u64,
    pub gaps: u64,
    pub gap_ms: f64,
    pub skips: u64,
    pub skipped_ms: f64,
    pub reconnects: u64,
    /// Audio missing because of interruptions (reconnects and a stream that ended early), ms.
    pub interruption_lost_ms: f64,
    pub duplicates: u64,
}

/// One second's line.
#[derive(Debug, Clone)]
pub struct Second {
    pub elapsed_s: f64,
    pub connected: bool,
    pub instance: Option<String>,
    pub chunks: u64,
    pub kbps: f64,
    pub latency: Option<Latency>,
    pub jitter_ms: f64,
    pub rtt_ms: Option<f64>,
    pub clock_offset_ms: Option<f64>,
}

/// One interruption: from the last audio before a lost connection to the first audio after.
#[derive(Debug, Clone)]
pub struct Interruption {
    pub n: u64,
    /// When the last audio before it arrived, ms since the epoch.
    pub started_unix_ms: u64,
    pub cause: String,
    pub instance_before: Option<String>,
    pub instance_after: Option<String>,
    /// Wall-clock time without audio, ms.
    pub duration_ms: f64,
    /// Audio missing from the timeline, ms (0 when the new connection continued seamlessly).
    pub lost_ms: f64,
    /// Audio received twice and dropped, ms (a reconnect's burst overlapping what came before).
    pub overlap_ms: f64,
    /// `sequence` or `clock`: how the missing audio was measured.
    pub splice: &'static str,
    pub attempts: u64,
    /// A move the server asked for (`goaway`), made before the old connection was closed.
    pub planned: bool,
}

impl Interruption {
    /// Whether it cost audio: a planned move that spliced seamlessly did not.
    pub fn audible(&self) -> bool {
        !self.planned || self.lost_ms > 0.0
    }
}

#[derive(Debug, Clone)]
pub struct Summary {
    pub elapsed_s: f64,
    pub totals: Totals,
    pub latency: Option<Latency>,
    pub jitter_ms: f64,
    pub interruptions: u64,
    pub interruption_ms: f64,
    pub outcome: &'static str,
    pub exit_code: i32,
    pub wav_seconds: Option<f64>,
}

pub struct Console {
    json: bool,
}

impl Console {
    pub fn new(json: bool) -> Console {
        Console { json }
    }

    pub fn connected(&self, url: &str, hello: &Hello, connection: u64) {
        if self.json {
            self.emit(json!({
                "type": "connected",
                "t": now_ms(),
                "url": url,
                "connection": connection,
                "instance": hello.instance,
                "codec": hello.codec,
                "sample_rate": hello.format.sample_rate,
                "channels": hello.format.channels,
                "chunk_ms": hello.chunk_ms,
                "chunk_frames": hello.chunk_frames,
                "seq": hello.seq,
            }));
        } else {
            self.line(format!(
                "connected to {url} (instance {}): {} {} Hz {} ch, {} ms chunks",
                hello.instance,
                hello.codec,
                hello.format.sample_rate,
                hello.format.channels,
                hello.chunk_ms
            ));
        }
    }

    pub fn disconnected(&self, reason: &str, reconnecting: bool) {
        if self.json {
            self.emit(
                json!({"type": "disconnected", "t": now_ms(), "reason": reason,
                             "reconnecting": reconnecting}),
            );
        } else {
            let next = if reconnecting { "; reconnecting" } else { "" };
            self.line(format!("disconnected: {reason}{next}"));
        }
    }

    /// The server reports its source down, live again, or ended (the connection stays up).
    pub fn source(&self, state: &str, reason: Option<&str>) {
        if self.json {
            self.emit(json!({"type": "source", "t": now_ms(), "state": state, "reason": reason}));
        } else {
            let reason = reason.map(|r| format!(": {r}")).unwrap_or_default();
            self.line(format!("server: source {state}{reason}"));
        }
    }

    /// Anything else worth a line.
    pub fn note(&self, text: &str) {
        if self.json {
            self.emit(json!({"type": "note", "t": now_ms(), "text": text}));
        } else {
            self.line(text.to_string());
        }
    }

    pub fn second(&self, s: &Second, totals: &Totals) {
        if self.json {
            self.emit(json!({
                "type": "stats",
                "t": now_ms(),
                "elapsed_s": round(s.elapsed_s, 3),
                "connected": s.connected,
                "instance": s.instance,
                "chunks": s.chunks,
                "kbps": round(s.kbps, 1),
                "latency_ms": latency_json(s.latency),
                "jitter_ms": round(s.jitter_ms, 3),
                "rtt_ms": s.rtt_ms.map(|v| round(v, 3)),
                "clock_offset_ms": s.clock_offset_ms.map(|v| round(v, 3)),
                "totals": totals_json(totals),
            }));
            return;
        }
        let latency = match s.latency {
            Some(l) => format!("latency p50 {:5.1} p99 {:5.1} ms", l.p50, l.p99),
            None => "latency     -         - ms".to_string(),
        };
        let instance = match (&s.instance, s.connected) {
            (Some(i), true) => i.clone(),
            _ => "(disconnected)".to_string(),
        };
        self.line(format!(
            "{:7.1} s  {instance}  {latency}  jitter {:4.1} ms  {:6.0} kbit/s  {:3} chunks  \
             gaps {} ({:.0} ms)  skips {} ({:.0} ms)  reconnects {}",
            s.elapsed_s,
            s.jitter_ms,
            s.kbps,
            s.chunks,
            totals.gaps,
            totals.gap_ms,
            totals.skips,
            totals.skipped_ms,
            totals.reconnects
        ));
    }

    /// A sequence gap or a server skip.
    pub fn hole(&self, kind: &str, from: u64, to: u64, ms: f64) {
        if self.json {
            self.emit(
                json!({"type": "gap", "t": now_ms(), "kind": kind, "from": from, "to": to,
                             "chunks": to.wrapping_sub(from), "ms": round(ms, 3)}),
            );
        } else {
            let what = if kind == "skipped" {
                "server skipped"
            } else {
                "sequence gap:"
            };
            self.line(format!(
                "{what} chunks {from}..{to} ({} chunks, {ms:.0} ms)",
                to.wrapping_sub(from)
            ));
        }
    }

    pub fn interruption(&self, i: &Interruption) {
        if self.json {
            let mut line = interruption_json(i);
            line["type"] = json!("interruption");
            line["t"] = json!(now_ms());
            self.emit(line);
        } else if i.planned {
            let name = |i: &Option<String>| i.clone().unwrap_or_else(|| "?".into());
            self.line(format!(
                "instance change {}: {} -> {} ({}), {:.0} ms of audio lost, {:.0} ms between \
                 the last old and the first new chunk (spliced by {})",
                i.n,
                name(&i.instance_before),
                name(&i.instance_after),
                i.cause,
                i.lost_ms,
                i.duration_ms,
                i.splice
            ));
        } else {
            let name = |i: &Option<String>| i.clone().unwrap_or_else(|| "?".into());
            self.line(format!(
                "interruption {}: {:.0} ms without audio, {:.0} ms of audio lost{}, \
                 instance {} -> {} ({}; {} attempt{}, spliced by {})",
                i.n,
                i.duration_ms,
                i.lost_ms,
                if i.overlap_ms > 0.0 {
                    format!(" ({:.0} ms overlap dropped)", i.overlap_ms)
                } else {
                    String::new()
                },
                name(&i.instance_before),
                name(&i.instance_after),
                i.cause,
                i.attempts,
                if i.attempts == 1 { "" } else { "s" },
                i.splice
            ));
        }
    }

    pub fn summary(&self, s: &Summary) {
        if self.json {
            self.emit(json!({
                "type": "summary",
                "t": now_ms(),
                "elapsed_s": round(s.elapsed_s, 3),
                "latency_ms": latency_json(s.latency),
                "jitter_ms": round(s.jitter_ms, 3),
                "interruptions": s.interruptions,
                "interruption_ms": round(s.interruption_ms, 1),
                "totals": totals_json(&s.totals),
                "wav_s": s.wav_seconds.map(|v| round(v, 3)),
                "outcome": s.outcome,
                "exit_code": s.exit_code,
            }));
            return;
        }
        let latency = match s.latency {
            Some(l) => format!(
                "latency p50 {:.1} / p99 {:.1} / max {:.1} ms",
                l.p50, l.p99, l.max
            ),
            None => "no latency measured".to_string(),
        };
        let t = &s.totals;
        self.line(format!(
            "summary: {:.1} s, {} chunks, {latency}, jitter {:.1} ms, gaps {} ({:.0} ms), \
             skips {} ({:.0} ms), interruptions {} ({:.0} ms without audio, {:.0} ms lost): {} \
             (exit {})",
            s.elapsed_s,
            t.chunks,
            s.jitter_ms,
            t.gaps,
            t.gap_ms,
            t.skips,
            t.skipped_ms,
            s.interruptions,
            s.interruption_ms,
            t.interruption_lost_ms,
            s.outcome,
            s.exit_code
        ));
    }

    fn emit(&self, value: Value) {
        self.line(value.to_string());
    }

    fn line(&self, text: String) {
        // A closed stdout (a pipe to `head`) must not stop the recording.
        crate::outln!("{text}");
    }
}

/// One interruption's fields, as on its JSON line and in `--report`.
pub fn interruption_json(i: &Interruption) -> Value {
    json!({
        "n": i.n,
        "started_t": i.started_unix_ms,
        "cause": i.cause,
        "planned": i.planned,
        "instance_before": i.instance_before,
        "instance_after": i.instance_after,
        "duration_ms": round(i.duration_ms, 1),
        "lost_ms": round(i.lost_ms, 1),
        "overlap_ms": round(i.overlap_ms, 1),
        "splice": i.splice,
        "attempts": i.attempts,
    })
}

pub fn latency_json(l: Option<Latency>) -> Value {
    match l {
        Some(l) => json!({"p50": round(l.p50, 3), "p99": round(l.p99, 3), "max": round(l.max, 3)}),
        None => Value::Null,
    }
}

pub fn totals_json(t: &Totals) -> Value {
    json!({
        "chunks": t.chunks,
        "bytes": t.bytes,
        "gaps": t.gaps,
        "gap_ms": round(t.gap_ms, 1),
        "skips": t.skips,
        "skipped_ms": round(t.skipped_ms, 1),
        "reconnects": t.reconnects,
        "interruption_lost_ms": round(t.interruption_lost_ms, 1),
        "duplicates": t.duplicates,
    })
}

pub(crate) fn round(v: f64, digits: i32) -> f64 {
    let f = 10f64.powi(digits);
    (v * f).round() / f
}

fn now_ms() -> u64 {
    crate::audio::unix_millis_now()
}
