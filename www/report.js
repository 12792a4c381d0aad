// earshot interruption report: the interruption log as a CSV file (RFC 4180: a header line,
// CRLF line ends, fields quoted when they need it), the evidence an engineer attaches to a change
// ticket. Pure functions over the monitor's rows, so node's test runner pins the format.

/** The columns, in order, with what each holds (README "Browser player" repeats this). */
export const CSV_COLUMNS = Object.freeze([
  'start_utc', // when the interruption began, ISO 8601 in UTC with milliseconds
  'end_utc', // when audio flowed again; empty while it is still going on
  'duration_ms', // end − start: how long the page was without new audio
  'lost_ms', // audio that never reached the page; empty while still going on
  'measured_by', // how lost_ms was measured: sequence, clock, server, player
  'cause', // socket closed, stall, instance change, sequence gap, server skip, buffer underrun, source down
  'instance_before', // the backend's --instance-id before
  'instance_after', // and after
  'seq_before', // the last chunk played before the interruption
  'seq_after', // the first chunk played after it
  'detail', // what happened, in words
]);

/** Milliseconds with at most one decimal: sub-ms digits of a page's clock are noise. */
const ms = (value) => (value === null || value === undefined ? '' : String(Math.round(value * 10) / 10));

const utc = (t) => (t === null || t === undefined ? '' : new Date(t).toISOString());

/**
 * One CSV field. Quoted when it holds a comma, quote or line break; text a spreadsheet would
 * run as a formula (it starts with = + - @ or a tab) gets a leading apostrophe, because instance
 * names and reasons come from servers, and the file is opened by people.
 */
export function csvField(value, { text = false } = {}) {
  let s = value === null || value === undefined ? '' : String(value);
  if (text && /^[=+\-@\t\r]/.test(s)) s = `'${s}`;
  return /[",\r\n]/.test(s) ? `"${s.replaceAll('"', '""')}"` : s;
}

/** The rows (ContinuityMonitor.rows) as a CSV document, oldest first. */
export function interruptionsCsv(rows) {
  const lines = [CSV_COLUMNS.join(',')];
  for (const row of rows) {
    lines.push(
      [
        csvField(utc(row.start)),
        csvField(row.ongoing ? '' : utc(row.end)),
        csvField(row.ongoing ? '' : ms(row.durationMs)),
        csvField(row.ongoing ? '' : ms(row.lostMs)),
        csvField(row.ongoing ? '' : row.measuredBy, { text: true }),
        csvField(row.cause, { text: true }),
        csvField(row.instanceBefore, { text: true }),
        csvField(row.instanceAfter, { text: true }),
        csvField(row.seqBefore),
        csvField(row.seqAfter),
        csvField(row.ongoing ? `in progress${row.detail ? `; ${row.detail}` : ''}` : row.detail, { text: true }),
      ].join(','),
    );
  }
  return `${lines.join('\r\n')}\r\n`;
}

/** earshot-interruptions-20261121T210309Z.csv: sorts by time, safe on every file system. */
export function csvFileName(t) {
  const stamp = new Date(t).toISOString().replace(/\.\d+Z$/, 'Z').replace(/[-:]/g, '');
  return `earshot-interruptions-${stamp}.csv`;
}
