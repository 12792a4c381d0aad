//! One ladder step's results, and their three renderings: the table on standard output, CSV,
//! and Markdown. One list of columns serves all three, so they always agree.

use std::fmt::Write as _;

/// Everything measured at one listener count.
#[derive(Debug, Clone, Default)]
pub struct StepResult {
    pub label: String,
    /// Listeners asked for.
    pub target: usize,
    /// Listeners connected when the measurement started.
    pub connected: usize,
    pub connect_failures: usize,
    /// Listeners whose connection ended during the measurement.
    pub dropped: u64,
    pub window_s: f64,
    /// Share of the window's chunks that arrived on time, over all listeners (WebSocket only).
    pub on_time_pct: Option<f64>,
    /// The same for the listener that did worst.
    pub worst_pct: Option<f64>,
    /// Listeners below the 99.9 % target.
    pub below_target: Option<usize>,
    /// Bytes received against the stream's byte rate, over all listeners.
    pub delivered_pct: f64,
    pub worst_delivered_pct: f64,
    pub p50_ms: Option<f64>,
    pub p99_ms: Option<f64>,
    pub max_ms: Option<f64>,
    /// Mean and largest RFC 3550 jitter over listeners.
    pub jitter_ms: Option<f64>,
    pub jitter_max_ms: Option<f64>,
    pub gaps: u64,
    pub gap_chunks: u64,
    pub skips: u64,
    pub skipped_chunks: u64,
    pub mbytes_per_s: f64,
    /// The server's CPU in % of one core, its RSS and its threads.
    pub server_cpu_pct: Option<f64>,
    /// The server's CPU before any listener joined, % of one core (the same for every step).
    pub server_idle_cpu_pct: Option<f64>,
    pub server_rss_mib: Option<f64>,
    pub server_threads: Option<u64>,
    /// The server's context switches per second, all threads.
    pub server_switches_per_s: Option<f64>,
    pub gen_cpu_pct: Option<f64>,
    /// All cores' busy share (100 % = every core busy).
    pub machine_busy_pct: Option<f64>,
    /// How late the generator read a due socket, p99.
    pub lag_p99_ms: Option<f64>,
    /// The generator's socket reads per chunk received (WebSocket only).
    pub reads_per_chunk: Option<f64>,
    pub ramp_s: f64,
}

impl StepResult {
    /// Resident memory per connected listener, KiB (the whole process's RSS divided).
    pub fn rss_per_listener_kib(&self) -> Option<f64> {
        Some(self.server_rss_mib? * 1024.0 / self.connected.max(1) as f64)
    }

    /// CPU used by everything else on the machine during the step, in % of one core: what the
    /// benchmark had to share the cores with.
    pub fn others_cpu_pct(&self) -> Option<f64> {
        let cores = crate::client::procstat::cores() as f64;
        let total = self.machine_busy_pct? * cores;
        Some((total - self.server_cpu_pct.unwrap_or(0.0) - self.gen_cpu_pct?).max(0.0))
    }

    /// Server CPU time per listener per second of stream, µs.
    pub fn cpu_us_per_listener(&self) -> Option<f64> {
        Some(self.server_cpu_pct? * 10_000.0 / self.connected.max(1) as f64)
    }

    /// What a listener adds: server CPU above its idle use, per listener per second, µs. The
    /// idle part (producing the stream, or taking in a feed) is paid once, however many listen.
    pub fn added_cpu_us_per_listener(&self) -> Option<f64> {
        let added = (self.server_cpu_pct? - self.server_idle_cpu_pct?).max(0.0);
        Some(added * 10_000.0 / self.connected.max(1) as f64)
    }
}

/// Where a column is shown: the terminal table has the fewest (it must fit a wide terminal),
/// the Markdown table (BENCHMARKS.md) more, the CSV every one.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Shown {
    Everywhere,
    Markdown,
    CsvOnly,
}

struct Column {
    /// CSV header (snake_case).
    key: &'static str,
    shown: Shown,
    /// Table and Markdown header.
    title: &'static str,
    width: usize,
    /// The value for display; `None` prints as `-`.
    show: fn(&StepResult) -> Option<String>,
    /// The value for CSV: full precision, empty when unknown.
    raw: fn(&StepResult) -> Option<String>,
}

fn f1(v: Option<f64>) -> Option<String> {
    v.map(|v| format!("{v:.1}"))
}

fn pct(v: Option<f64>) -> Option<String> {
    // Enough digits to tell 99.9 from 99.95 and 100.
    v.map(|v| {
        if (99.995..100.0).contains(&v) {
            "99.99".to_string()
        } else if v >= 99.0 {
            format!("{v:.2}")
        } else {
            format!("{v:.1}")
        }
    })
}

fn raw(v: Option<f64>) -> Option<String> {
    v.map(|v| format!("{v:.4}"))
}

fn int<T: ToString>(v: T) -> Option<String> {
    Some(v.to_string())
}

#[rustfmt::skip]
const COLUMNS: &[Column] = &[
    Column { key: "label", shown: Shown::CsvOnly, title: "server", width: 8, show: |r| Some(r.label.clone()), raw: |r| Some(r.label.clone()) },
    Column { key: "listeners", shown: Shown::Everywhere, title: "listeners", width: 9, show: |r| int(r.target), raw: |r| int(r.target) },
    Column { key: "connected", shown: Shown::Everywhere, title: "conn", width: 6, show: |r| int(r.connected), raw: |r| int(r.connected) },
    Column { key: "on_time_pct", shown: Shown::Everywhere, title: "on-time%", width: 8, show: |r| pct(r.on_time_pct), raw: |r| raw(r.on_time_pct) },
    Column { key: "worst_listener_pct", shown: Shown::Everywhere, title: "worst%", width: 7, show: |r| pct(r.worst_pct), raw: |r| raw(r.worst_pct) },
    Column { key: "listeners_below_99_9", shown: Shown::Markdown, title: "<99.9%", width: 6, show: |r| r.below_target.map(|v| v.to_string()), raw: |r| r.below_target.map(|v| v.to_string()) },
    Column { key: "delivered_pct", shown: Shown::CsvOnly, title: "bytes%", width: 7, show: |r| pct(Some(r.delivered_pct)), raw: |r| raw(Some(r.delivered_pct)) },
    Column { key: "p50_ms", shown: Shown::Everywhere, title: "p50 ms", width: 7, show: |r| f1(r.p50_ms), raw: |r| raw(r.p50_ms) },
    Column { key: "p99_ms", shown: Shown::Everywhere, title: "p99 ms", width: 7, show: |r| f1(r.p99_ms), raw: |r| raw(r.p99_ms) },
    Column { key: "max_ms", shown: Shown::Everywhere, title: "max ms", width: 7, show: |r| f1(r.max_ms), raw: |r| raw(r.max_ms) },
    Column { key: "jitter_ms", shown: Shown::Everywhere, title: "jitter", width: 6, show: |r| f1(r.jitter_ms), raw: |r| raw(r.jitter_ms) },
    Column { key: "gaps", shown: Shown::Everywhere, title: "gaps", width: 5, show: |r| int(r.gaps), raw: |r| int(r.gaps) },
    Column { key: "skips", shown: Shown::Everywhere, title: "skips", width: 5, show: |r| int(r.skips), raw: |r| int(r.skips) },
    Column { key: "dropped", shown: Shown::Everywhere, title: "drops", width: 5, show: |r| int(r.dropped), raw: |r| int(r.dropped) },
    Column { key: "mbytes_per_s", shown: Shown::Everywhere, title: "MB/s", width: 7, show: |r| f1(Some(r.mbytes_per_s)), raw: |r| raw(Some(r.mbytes_per_s)) },
    Column { key: "server_cpu_pct", shown: Shown::Everywhere, title: "srv CPU%", width: 8, show: |r| f1(r.server_cpu_pct), raw: |r| raw(r.server_cpu_pct) },
    Column { key: "cpu_us_per_listener_s", shown: Shown::Markdown, title: "µs/lis/s", width: 8, show: |r| f1(r.cpu_us_per_listener()), raw: |r| raw(r.cpu_us_per_listener()) },
    Column { key: "server_idle_cpu_pct", shown: Shown::CsvOnly, title: "idle CPU%", width: 9, show: |r| f1(r.server_idle_cpu_pct), raw: |r| raw(r.server_idle_cpu_pct) },
    Column { key: "added_cpu_us_per_listener_s", shown: Shown::Markdown, title: "+µs/lis/s", width: 9, show: |r| f1(r.added_cpu_us_per_listener()), raw: |r| raw(r.added_cpu_us_per_listener()) },
    Column { key: "server_rss_mib", shown: Shown::Everywhere, title: "RSS MiB", width: 7, show: |r| f1(r.server_rss_mib), raw: |r| raw(r.server_rss_mib) },
    Column { key: "rss_kib_per_listener", shown: Shown::Everywhere, title: "KiB/lis", width: 7, show: |r| f1(r.rss_per_listener_kib()), raw: |r| raw(r.rss_per_listener_kib()) },
    Column { key: "server_threads", shown: Shown::Markdown, title: "threads", width: 7, show: |r| r.server_threads.map(|v| v.to_string()), raw: |r| r.server_threads.map(|v| v.to_string()) },
    Column { key: "server_context_switches_per_s", shown: Shown::Markdown, title: "ctx sw/s", width: 8, show: |r| r.server_switches_per_s.map(|v| format!("{v:.0}")), raw: |r| raw(r.server_switches_per_s) },
    Column { key: "gen_cpu_pct", shown: Shown::Everywhere, title: "gen CPU%", width: 8, show: |r| f1(r.gen_cpu_pct), raw: |r| raw(r.gen_cpu_pct) },
    Column { key: "machine_busy_pct", shown: Shown::CsvOnly, title: "busy%", width: 5, show: |r| r.machine_busy_pct.map(|v| format!("{v:.0}")), raw: |r| raw(r.machine_busy_pct) },
    Column { key: "others_cpu_pct", shown: Shown::Everywhere, title: "others%", width: 7, show: |r| r.others_cpu_pct().map(|v| format!("{v:.0}")), raw: |r| raw(r.others_cpu_pct()) },
    Column { key: "gen_lag_p99_ms", shown: Shown::Everywhere, title: "lag ms", width: 6, show: |r| f1(r.lag_p99_ms), raw: |r| raw(r.lag_p99_ms) },
    Column { key: "gen_reads_per_chunk", shown: Shown::Markdown, title: "reads/chunk", width: 11, show: |r| r.reads_per_chunk.map(|v| format!("{v:.2}")), raw: |r| raw(r.reads_per_chunk) },
    Column { key: "jitter_max_ms", shown: Shown::CsvOnly, title: "jitter max", width: 10, show: |r| f1(r.jitter_max_ms), raw: |r| raw(r.jitter_max_ms) },
    Column { key: "gap_chunks", shown: Shown::CsvOnly, title: "gap chunks", width: 10, show: |r| int(r.gap_chunks), raw: |r| int(r.gap_chunks) },
    Column { key: "skipped_chunks", shown: Shown::CsvOnly, title: "skipped chunks", width: 14, show: |r| int(r.skipped_chunks), raw: |r| int(r.skipped_chunks) },
    Column { key: "connect_failures", shown: Shown::CsvOnly, title: "failed", width: 6, show: |r| int(r.connect_failures), raw: |r| int(r.connect_failures) },
    Column { key: "worst_delivered_pct", shown: Shown::CsvOnly, title: "worst bytes%", width: 12, show: |r| pct(Some(r.worst_delivered_pct)), raw: |r| raw(Some(r.worst_delivered_pct)) },
    Column { key: "window_s", shown: Shown::CsvOnly, title: "window s", width: 8, show: |r| f1(Some(r.window_s)), raw: |r| raw(Some(r.window_s)) },
    Column { key: "ramp_s", shown: Shown::CsvOnly, title: "ramp s", width: 6, show: |r| f1(Some(r.ramp_s)), raw: |r| raw(Some(r.ramp_s)) },
];

fn columns(view: Shown) -> impl Iterator<Item = &'static Column> {
    COLUMNS.iter().filter(move |c| c.shown <= view)
}

fn shown(r: &StepResult, c: &Column) -> String {
    (c.show)(r).unwrap_or_else(|| "-".to_string())
}

/// The table's header line.
pub fn table_header() -> String {
    table_line(|c| c.title.to_string())
}

/// One row of the table.
pub fn table_row(r: &StepResult) -> String {
    table_line(|c| shown(r, c))
}

/// One line of the table: each column's cell right-aligned to the column's width, so the
/// header and every row line up.
fn table_line(cell: impl Fn(&Column) -> String) -> String {
    let mut line = String::new();
    for c in columns(Shown::Everywhere) {
        let _ = write!(line, "{:>w$} ", cell(c), w = c.width);
    }
    line.trim_end().to_string()
}

pub fn csv(results: &[StepResult]) -> String {
    let mut out = COLUMNS.iter().map(|c| c.key).collect::<Vec<_>>().join(",");
    out.push('\n');
    for r in results {
        let row: Vec<String> = COLUMNS
            .iter()
            .map(|c| (c.raw)(r).unwrap_or_default())
            .collect();
        out.push_str(&row.join(","));
        out.push('\n');
    }
    out
}

pub fn markdown(results: &[StepResult]) -> String {
    let titles: Vec<&str> = columns(Shown::Markdown).map(|c| c.title).collect();
    let mut out = format!(
        "| {} |\n|{}\n",
        titles.join(" | "),
        "---:|".repeat(titles.len())
    );
    for r in results {
        let cells: Vec<String> = columns(Shown::Markdown).map(|c| shown(r, c)).collect();
        out.push_str(&format!("| {} |\n", cells.join(" | ")));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn step() -> StepResult {
        StepResult {
            label: "earshot".into(),
            target: 20,
            connected: 20,
            on_time_pct: Some(99.95),
            worst_pct: Some(100.0),
            p99_ms: Some(12.345),
            server_cpu_pct: Some(10.0),
            server_idle_cpu_pct: Some(2.0),
            server_rss_mib: Some(5.0),
            ..StepResult::default()
        }
    }

    #[test]
    fn every_rendering_has_one_cell_per_column() {
        let r = step();
        let csv = csv(std::slice::from_ref(&r));
        let lines: Vec<&str> = csv.lines().collect();
        assert_eq!(lines.len(), 2);
        assert_eq!(lines[0].split(',').count(), lines[1].split(',').count());
        assert!(lines[1].starts_with("earshot,20,20,99.9500,100.0000,"));
        assert_eq!(r.cpu_us_per_listener(), Some(5000.0));
        assert_eq!(r.added_cpu_us_per_listener(), Some(4000.0));
        assert_eq!(r.rss_per_listener_kib(), Some(256.0));
        let md = markdown(std::slice::from_ref(&r));
        let rows: Vec<&str> = md.lines().collect();
        assert_eq!(rows[0].matches('|').count(), rows[2].matches('|').count());
        assert_eq!(table_header().len(), table_row(&r).len());
        assert!(table_row(&r).contains("99.95"));
        assert!(table_row(&r).contains("12.3"));
    }
}
