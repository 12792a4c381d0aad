// The interruption log as CSV: the documented columns in order, RFC 4180 quoting and line ends,
// times in UTC, nothing a spreadsheet would run as a formula, and rows still in progress marked.

import assert from 'node:assert/strict';
import test from 'node:test';

import { CAUSE, ContinuityMonitor } from '../../www/monitor.js';
import { CSV_COLUMNS, csvField, csvFileName, interruptionsCsv } from '../../www/report.js';

const T0 = Date.UTC(2026, 10, 21, 21, 3, 9, 125);

/** Splits a CSV document into records of fields (enough of RFC 4180 for these tests). */
function parseCsv(text) {
  const records = [];
  let field = '';
  let record = [];
  let quoted = false;
  for (let i = 0; i < text.length; i++) {
    const c = text[i];
    if (quoted) {
      if (c === '"' && text[i + 1] === '"') field += text[++i];
      else if (c === '"') quoted = false;
      else field += c;
    } else if (c === '"') quoted = true;
    else if (c === ',') {
      record.push(field);
      field = '';
    } else if (c === '\r' && text[i + 1] === '\n') {
      record.push(field);
      records.push(record);
      record = [];
      field = '';
      i++;
    } else field += c;
  }
  return records;
}

function monitorWithRows() {
  const hello = (instance, seq) => ({ codec: 'pcm_s16le', sample_rate: 44100, channels: 2, chunk_frames: 882, instance, seq: BigInt(seq) });
  const feed = (m, from, to) => {
    for (let seq = from; seq <= to; seq++) m.chunk(BigInt(seq), BigInt((T0 + seq * 20) * 1000), T0 + seq * 20 + 5);
  };
  const m = new ContinuityMonitor();
  m.connected(hello('A', 0), T0);
  feed(m, 0, 100);
  m.connected(hello('B', 92), T0 + 2030, null, { reason: 'goaway', from: 'A', overlap: 9 });
  feed(m, 101, 150);
  m.stalled(T0 + 3005, T0 + 3160, 155, 150);
  return m;
}

test('the header names the documented columns, in order, and lines end in CRLF', () => {
  const csv = interruptionsCsv([]);
  assert.equal(csv, `${CSV_COLUMNS.join(',')}\r\n`);
  assert.deepEqual(CSV_COLUMNS, [
    'start_utc', 'end_utc', 'duration_ms', 'lost_ms', 'measured_by', 'cause',
    'instance_before', 'instance_after', 'seq_before', 'seq_after', 'detail',
  ]);
});

test('a finished instance change and a stall in progress, one record each', () => {
  const records = parseCsv(interruptionsCsv(monitorWithRows().rows));
  assert.equal(records.length, 3);
  const rows = records.slice(1).map((r) => Object.fromEntries(CSV_COLUMNS.map((c, i) => [c, r[i]])));
  assert.deepEqual(rows[0], {
    start_utc: '2026-11-21T21:03:11.150Z', // chunk 101's arrival
    end_utc: '2026-11-21T21:03:11.150Z',
    duration_ms: '0',
    lost_ms: '0',
    measured_by: 'sequence',
    cause: CAUSE.INSTANCE_CHANGE,
    instance_before: 'A',
    instance_after: 'B',
    seq_before: '100',
    seq_after: '101',
    detail: 'server draining (goaway); spliced in at seq 101, 9 repeated chunks dropped',
  });
  assert.equal(rows[1].cause, CAUSE.STALL);
  assert.equal(rows[1].start_utc, '2026-11-21T21:03:12.130Z');
  assert.deepEqual([rows[1].end_utc, rows[1].duration_ms, rows[1].lost_ms], ['', '', '']);
  assert.match(rows[1].detail, /^in progress; no audio for 155 ms/);
});

test('fields with commas, quotes or line breaks are quoted, and formulas are defused', () => {
  assert.equal(csvField('plain'), 'plain');
  assert.equal(csvField('a, b'), '"a, b"');
  assert.equal(csvField('say "bye"'), '"say ""bye"""');
  assert.equal(csvField('two\nlines'), '"two\nlines"');
  assert.equal(csvField('=HYPERLINK("x")', { text: true }), `"'=HYPERLINK(""x"")"`);
  assert.equal(csvField('@sum', { text: true }), "'@sum");
  assert.equal(csvField(null), '');
  assert.equal(csvField(12.5), '12.5');
});

test('the file is named by the UTC time of the export', () => {
  assert.equal(csvFileName(T0), 'earshot-interruptions-20261121T210309Z.csv');
});
