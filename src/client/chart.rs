//! The bench's SVG chart: latency (p50, p99, max) above, the share of chunks on time (overall
//! and the worst listener's) below, both against the listener count on a log axis, with the
//! targets drawn in. Plain SVG 1.1 text, no scripts, readable in any browser or image viewer.
//!
//! Both vertical scales are chosen so that a collapse at the top of the ladder does not flatten
//! everything before it: latency is on a log scale (13 ms, 70 ms and 4 s all stay readable),
//! and the share on a "nines" scale, where 90 %, 99 %, 99.9 % and 99.99 % are equally spaced,
//! so the 99.9 % target sits in the middle instead of in the top pixel.

use std::fmt::Write as _;

use crate::client::axes::{Scale, XAxis, YAxis, nice_ceiling, ticks};
use crate::client::bench::TARGET_SHARE_PCT;
use crate::client::results::StepResult;

pub const WIDTH: f64 = 960.0;
const HEIGHT: f64 = 660.0;
pub const LEFT: f64 = 78.0;
pub const RIGHT: f64 = 30.0;
const TOP_PANEL: (f64, f64) = (100.0, 330.0);
const BOTTOM_PANEL: (f64, f64) = (410.0, 600.0);
/// Other processes using at least this much CPU (% of one core) during a step get a note.
const OTHERS_NOTE_PCT: f64 = 50.0;
const BLUE: &str = "#2563eb";
const ORANGE: &str = "#ea580c";
const GREY: &str = "#6b7280";
const GREEN: &str = "#16a34a";
const PURPLE: &str = "#7c3aed";
const RED: &str = "#dc2626";

/// A series: its name, colour, dash pattern, width, and a value per step (if measured).
struct Series<'a> {
    name: &'a str,
    colour: &'a str,
    dash: &'a str,
    width: f64,
    values: Vec<Option<f64>>,
}

/// The whole chart; `subtitle` says where and how it was measured.
pub fn render(title: &str, subtitle: &str, steps: &[StepResult], on_time_ms: f64) -> String {
    let mut svg = String::new();
    let _ = write!(
        svg,
        r##"<?xml version="1.0" encoding="UTF-8"?>
<svg xmlns="http://www.w3.org/2000/svg" width="{WIDTH}" height="{HEIGHT}" viewBox="0 0 {WIDTH} {HEIGHT}" font-family="DejaVu Sans, Helvetica, Arial, sans-serif" font-size="12">
<rect width="100%" height="100%" fill="#ffffff"/>
<text x="{LEFT}" y="26" font-size="17" font-weight="bold" fill="#111827">{}</text>
<text x="{LEFT}" y="45" font-size="12" fill="{GREY}">{}</text>
"##,
        escape(title),
        escape(subtitle)
    );
    let x = XAxis::new(steps);
    let timed = steps.iter().any(|s| s.p99_ms.is_some());
    if timed {
        latency_panel(&mut svg, steps, &x, on_time_ms);
    } else {
        cpu_panel(&mut svg, steps, &x);
    }
    share_panel(&mut svg, steps, &x, timed);
    x_axis(&mut svg, steps, &x);
    svg.push_str("</svg>\n");
    svg
}

/// For a stream without timestamps (HTTP), the top panel shows what can be measured instead:
/// the server's CPU, in % of one core.
fn cpu_panel(svg: &mut String, steps: &[StepResult], x: &XAxis) {
    let (top, bottom) = TOP_PANEL;
    panel_title(
        svg,
        top,
        "Server CPU, % of one core (an HTTP stream carries no timestamps)",
    );
    let high = steps
        .iter()
        .filter_map(|s| s.server_cpu_pct)
        .fold(0.0, f64::max);
    let hi = nice_ceiling((high * 1.2).max(10.0));
    let y = YAxis {
        lo: 0.0,
        hi,
        top,
        bottom,
        scale: Scale::Linear,
    };
    grid(svg, &y, &ticks(0.0, hi), |v| format!("{v:.0}"));
    frame(svg, top, bottom);
    let series = [Series {
        name: "server CPU",
        colour: ORANGE,
        dash: "",
        width: 2.5,
        values: steps.iter().map(|s| s.server_cpu_pct).collect(),
    }];
    plot(svg, steps, x, &y, &series[0], " %");
    legend(svg, top, &series);
}

fn latency_panel(svg: &mut String, steps: &[StepResult], x: &XAxis, on_time_ms: f64) {
    let (top, bottom) = TOP_PANEL;
    panel_title(svg, top, "Latency, ms (arrival minus production)");
    // From the power of ten below the smallest p50 to the one above the largest maximum.
    let smallest = steps
        .iter()
        .filter_map(|s| s.p50_ms)
        .fold(on_time_ms, f64::min)
        .max(0.1);
    let largest = steps
        .iter()
        .filter_map(|s| s.max_ms.or(s.p99_ms))
        .fold(on_time_ms * 2.0, f64::max);
    let lo = 10f64.powf(smallest.log10().floor());
    let hi = 10f64.powf(largest.log10().ceil());
    let y = YAxis {
        lo,
        hi,
        top,
        bottom,
        scale: Scale::Log,
    };
    let mut marks = Vec::new();
    let mut decade = lo;
    while decade <= hi * 1.0001 {
        marks.extend(
            [decade, decade * 2.0, decade * 5.0]
                .into_iter()
                .filter(|m| *m <= hi * 1.0001),
        );
        decade *= 10.0;
    }
    grid(svg, &y, &marks, |v| {
        if v >= 1000.0 {
            format!("{:.0} s", v / 1000.0)
        } else if v >= 1.0 {
            format!("{v:.0}")
        } else {
            format!("{v:.1}")
        }
    });
    frame(svg, top, bottom);
    target_line(
        svg,
        &y,
        on_time_ms,
        &format!("on-time limit {on_time_ms:.0} ms"),
    );
    let series = [
        Series {
            name: "max",
            colour: GREY,
            dash: "4 3",
            width: 1.5,
            values: steps.iter().map(|s| s.max_ms).collect(),
        },
        Series {
            name: "p99",
            colour: ORANGE,
            dash: "",
            width: 2.5,
            values: steps.iter().map(|s| s.p99_ms).collect(),
        },
        Series {
            name: "p50",
            colour: BLUE,
            dash: "",
            width: 2.5,
            values: steps.iter().map(|s| s.p50_ms).collect(),
        },
    ];
    for s in &series {
        plot(svg, steps, x, &y, s, " ms");
    }
    legend(svg, top, &series);
}

fn share_panel(svg: &mut String, steps: &[StepResult], x: &XAxis, timed: bool) {
    let (top, bottom) = BOTTOM_PANEL;
    let series = if timed {
        panel_title(
            svg,
            top,
            "Chunks on time, % (of those produced during the step)",
        );
        [
            Series {
                name: "all listeners",
                colour: GREEN,
                dash: "",
                width: 2.5,
                values: steps.iter().map(|s| s.on_time_pct).collect(),
            },
            Series {
                name: "worst listener",
                colour: PURPLE,
                dash: "5 4",
                width: 2.0,
                values: steps.iter().map(|s| s.worst_pct).collect(),
            },
        ]
    } else {
        panel_title(svg, top, "Bytes delivered, % of the stream's byte rate");
        [
            Series {
                name: "all listeners",
                colour: GREEN,
                dash: "",
                width: 2.5,
                values: steps.iter().map(|s| Some(s.delivered_pct)).collect(),
            },
            Series {
                name: "worst listener",
                colour: PURPLE,
                dash: "5 4",
                width: 2.0,
                values: steps.iter().map(|s| Some(s.worst_delivered_pct)).collect(),
            },
        ]
    };
    let y = if timed {
        let y = YAxis {
            lo: 0.0,
            hi: 100.0,
            top,
            bottom,
            scale: Scale::Nines,
        };
        grid(svg, &y, &[0.0, 50.0, 90.0, 99.0, 99.9, 99.99], |v| {
            if v >= 99.99 {
                "≥99.99".to_string()
            } else {
                v.to_string()
            }
        });
        y
    } else {
        // Bytes are counted between two instants, so a step can show a little over or under
        // 100 % from where the sender's writes fall: a linear scale, not zoomed past 95 %.
        let values = || series.iter().flat_map(|s| s.values.iter().flatten());
        let lowest = values().fold(100.0, |a: f64, b| a.min(*b));
        let highest = values().fold(100.0, |a: f64, b| a.max(*b));
        let lo = [95.0, 90.0, 75.0, 50.0, 0.0]
            .into_iter()
            .find(|lo| *lo <= lowest)
            .unwrap_or(0.0);
        let hi = (highest + 1.0).ceil();
        let y = YAxis {
            lo,
            hi,
            top,
            bottom,
            scale: Scale::Linear,
        };
        grid(svg, &y, &ticks(lo, hi), |v| format!("{v:.0}"));
        y
    };
    frame(svg, top, bottom);
    if timed {
        target_line(
            svg,
            &y,
            TARGET_SHARE_PCT,
            &format!("target {TARGET_SHARE_PCT} %"),
        );
    }
    for s in &series {
        plot(svg, steps, x, &y, s, " %");
    }
    legend(svg, top, &series);
    // Steps during which the rest of the machine was busy are marked: the cores were shared.
    let mut noted = false;
    for s in steps {
        let Some(others) = s.others_cpu_pct().filter(|o| *o >= OTHERS_NOTE_PCT) else {
            continue;
        };
        noted = true;
        let _ = writeln!(
            svg,
            r##"<text x="{:.1}" y="{:.1}" text-anchor="middle" font-size="10" fill="{GREY}">{others:.0}</text>"##,
            x.at(s.target),
            bottom - 22.0
        );
    }
    if noted {
        let _ = writeln!(
            svg,
            r##"<text x="{:.1}" y="{:.1}" font-size="10" fill="{GREY}">grey numbers: CPU used by other processes during the step, % of one core</text>"##,
            LEFT + 6.0,
            bottom - 6.0
        );
    }
    // Steps where not everyone could connect are marked: their share covers fewer listeners.
    for s in steps.iter().filter(|s| s.connected < s.target) {
        let _ = writeln!(
            svg,
            r##"<text x="{:.1}" y="{:.1}" text-anchor="middle" font-size="11" fill="{RED}">{}/{} connected</text>"##,
            x.at(s.target),
            bottom - 8.0,
            s.connected,
            s.target
        );
    }
}

fn x_axis(svg: &mut String, steps: &[StepResult], x: &XAxis) {
    // Labels go on two rows when the counts crowd together at the right of the log axis.
    let mut last_on_row = [f64::NEG_INFINITY; 2];
    for s in steps {
        let px = x.at(s.target);
        for (top, bottom) in [TOP_PANEL, BOTTOM_PANEL] {
            let _ = writeln!(
                svg,
                r##"<line x1="{px:.1}" y1="{top}" x2="{px:.1}" y2="{bottom}" stroke="#e5e7eb"/>"##
            );
        }
        let Some(row) = (0..2).find(|r| px - last_on_row[*r] >= 34.0) else {
            continue; // no room on either row: the grid line stays, the label goes
        };
        let _ = writeln!(
            svg,
            r##"<text x="{px:.1}" y="{}" text-anchor="middle" fill="#374151">{}</text>"##,
            BOTTOM_PANEL.1 + 16.0 + 13.0 * row as f64,
            s.target
        );
        last_on_row[row] = px;
    }
    let _ = writeln!(
        svg,
        r##"<text x="{}" y="{}" text-anchor="middle" fill="#111827">concurrent listeners (log scale)</text>"##,
        (LEFT + WIDTH - RIGHT) / 2.0,
        BOTTOM_PANEL.1 + 48.0
    );
}

fn panel_title(svg: &mut String, top: f64, text: &str) {
    let _ = writeln!(
        svg,
        r##"<text x="{LEFT}" y="{}" font-size="14" font-weight="bold" fill="#111827">{}</text>"##,
        top - 26.0,
        escape(text)
    );
}

fn frame(svg: &mut String, top: f64, bottom: f64) {
    let _ = writeln!(
        svg,
        r##"<rect x="{LEFT}" y="{top}" width="{}" height="{}" fill="none" stroke="#9ca3af"/>"##,
        WIDTH - LEFT - RIGHT,
        bottom - top
    );
}

fn grid(svg: &mut String, y: &YAxis, values: &[f64], label: impl Fn(f64) -> String) {
    for &v in values {
        let py = y.at(v);
        let _ = writeln!(
            svg,
            r##"<line x1="{LEFT}" y1="{py:.1}" x2="{}" y2="{py:.1}" stroke="#f3f4f6"/><text x="{}" y="{:.1}" text-anchor="end" fill="#374151">{}</text>"##,
            WIDTH - RIGHT,
            LEFT - 8.0,
            py + 4.0,
            label(v)
        );
    }
}

fn target_line(svg: &mut String, y: &YAxis, value: f64, text: &str) {
    let py = y.at(value);
    let _ = writeln!(
        svg,
        r##"<line x1="{LEFT}" y1="{py:.1}" x2="{}" y2="{py:.1}" stroke="{RED}" stroke-width="1.2" stroke-dasharray="6 4"/><text x="{}" y="{:.1}" font-size="11" fill="{RED}">{}</text>"##,
        WIDTH - RIGHT,
        LEFT + 6.0,
        py - 5.0,
        escape(text)
    );
}

/// A polyline through the measured steps (a missing value breaks the line), a dot per step with
/// a tooltip, and an arrow for values beyond the panel.
fn plot(svg: &mut String, steps: &[StepResult], x: &XAxis, y: &YAxis, s: &Series, unit: &str) {
    let mut runs: Vec<Vec<(f64, f64)>> = vec![Vec::new()];
    for (step, value) in steps.iter().zip(&s.values) {
        match value {
            Some(v) => runs
                .last_mut()
                .map_or((), |r| r.push((x.at(step.target), y.at(*v)))),
            None => runs.push(Vec::new()),
        }
    }
    for run in runs.iter().filter(|r| r.len() > 1) {
        let points: Vec<String> = run
            .iter()
            .map(|(px, py)| format!("{px:.1},{py:.1}"))
            .collect();
        let _ = writeln!(
            svg,
            r##"<polyline points="{}" fill="none" stroke="{}" stroke-width="{}" stroke-dasharray="{}" stroke-linejoin="round"/>"##,
            points.join(" "),
            s.colour,
            s.width,
            s.dash
        );
    }
    for (step, value) in steps.iter().zip(&s.values) {
        let Some(v) = *value else { continue };
        let (px, py) = (x.at(step.target), y.at(v));
        let tip = format!("{} listeners, {}: {v:.2}{unit}", step.target, s.name);
        if v > y.hi || v < y.lo {
            // Off the scale: an arrow at the edge, with the value.
            let (dir, text_y) = if v > y.hi {
                (-1.0, py - 12.0)
            } else {
                (1.0, py + 20.0)
            };
            let _ = writeln!(
                svg,
                r##"<path d="M{:.1},{:.1} l-5,{:.1} l10,0 z" fill="{}"><title>{}</title></path><text x="{px:.1}" y="{text_y:.1}" text-anchor="middle" font-size="10" fill="{}">{}</text>"##,
                px,
                py + dir * 2.0,
                -dir * 8.0,
                s.colour,
                escape(&tip),
                s.colour,
                if v >= 1000.0 {
                    format!("{v:.0}")
                } else {
                    format!("{v:.1}")
                }
            );
        } else {
            let _ = writeln!(
                svg,
                r##"<circle cx="{px:.1}" cy="{py:.1}" r="3.5" fill="{}"><title>{}</title></circle>"##,
                s.colour,
                escape(&tip)
            );
        }
    }
}

fn legend(svg: &mut String, top: f64, series: &[Series]) {
    let mut px = WIDTH - RIGHT;
    for s in series.iter().rev() {
        let width = 48.0 + 7.0 * s.name.chars().count() as f64;
        px -= width;
        let _ = writeln!(
            svg,
            r##"<line x1="{:.1}" y1="{:.1}" x2="{:.1}" y2="{:.1}" stroke="{}" stroke-width="{}" stroke-dasharray="{}"/><text x="{:.1}" y="{:.1}" fill="#111827">{}</text>"##,
            px,
            top - 30.0,
            px + 22.0,
            top - 30.0,
            s.colour,
            s.width,
            s.dash,
            px + 27.0,
            top - 26.0,
            escape(s.name)
        );
    }
}

fn escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_chart_is_one_svg_document_with_both_panels() {
        let steps: Vec<StepResult> = [1, 20, 2000]
            .into_iter()
            .map(|n| StepResult {
                label: "earshot".into(),
                target: n,
                connected: n.min(1500),
                on_time_pct: Some(99.99),
                worst_pct: Some(if n > 1000 { 97.0 } else { 100.0 }),
                p50_ms: Some(2.0),
                p99_ms: Some(if n > 1000 { 900.0 } else { 8.0 }),
                max_ms: Some(20.0),
                ..StepResult::default()
            })
            .collect();
        let svg = render("bench <test> & more", "2 cores", &steps, 100.0);
        assert!(svg.starts_with("<?xml"));
        assert!(svg.trim_end().ends_with("</svg>"));
        assert!(svg.contains("bench &lt;test&gt; &amp; more"));
        assert!(svg.contains("Latency, ms"));
        assert!(svg.contains("Chunks on time"));
        assert!(svg.contains("1500/2000 connected"));
        assert_eq!(svg.matches("<svg").count(), 1);
    }
}
