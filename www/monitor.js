// earshot continuity monitor: turns what the connection and the player report into counters and
// the interruption log (every loss of audio with its start, duration, cause, the backend instance
// before and after, and the sequence numbers that measured it), plus latency and jitter. Pure
// bookkeeping over timestamps handed in by the caller, with no DOM or audio, so its rules are
// pinned by node tests.

import { chunkDurationMs, seqAfter } from './wire.js';

export const CAUSE = Object.freeze({
  SOCKET_CLOSED: 'socket closed',
  SEQUENCE_GAP: 'sequence gap',
  SERVER_SKIP: 'server skip',
  BUFFER_UNDERRUN: 'buffer underrun',
  SOURCE_DOWN: 'source down',
  INSTANCE_CHANGE: 'instance change',
  STALL: 'stall',
});

/** How a row's `lostMs` was measured. */
export const MEASURED_BY = Object.freeze({
  SEQUENCE: 'sequence', // chunks missing between the last played and the next (exact)
  CLOCK: 'clock', // time without audio: sequence numbers were not comparable
  SERVER: 'server', // the chunks a `skipped` message named
  PLAYER: 'player', // the silence the player played
});

/** Rows during which the page had no working connection; the next connection's first chunk
 * ends them. A stall becomes one of these when the move away from it fails. */
const isOutage = (row) => row?.cause === CAUSE.SOCKET_CLOSED || row?.cause === CAUSE.STALL;

const HANDOVER_WHY = { goaway: 'server draining (goaway)', stall: 'after a stall', moved: 'moved' };

/** How far (in chunks) the sequence numbers and production times of two chunks may disagree
 * before the sequence numbers are judged to come from a different (restarted) stream. */
const SEQ_TIME_TOLERANCE_CHUNKS = 3;

/** Chunks whose stamps are remembered, so that a burst repeating them is known for a repeat by
 * number and stamp together: 5 s of 20 ms chunks, far more than the default 200 ms burst. */
const RECENT_CHUNKS = 256;

export class ContinuityMonitor {
  constructor() {
    this.rows = [];
    this.version = 0; // bumped on every change to `rows`, so a view redraws only when needed
    this.open = null; // the interruption in progress, also in `rows`
    this.instance = null;
    this.format = null;
    this.chunkMs = null;
    this.last = null; // { seq, producedUs } of the last chunk accepted
    this.recent = new Map(); // seq → producedUs of the last RECENT_CHUNKS chunks accepted
    this.firstOfConnection = false;
    this.hasConnection = false;
    this.skipPending = null; // { from, to } announced by `skipped`, for the next chunk
    this.sourceBack = false; // a `source` live message came after a down one
    this.handover = null; // { why, before, overlap } from a move, until the new connection's first chunk
    this.stallEnd = null; // the stall row the last chunk accepted ended as late, not lost
    this.counters = {
      chunks: 0,
      duplicates: 0,
      gaps: 0,
      gapMs: 0,
      skips: 0,
      skipMs: 0,
      reconnects: 0,
      handovers: 0,
      underrunsLogged: 0,
    };
  }

  /** Audio lost in all finished interruptions, in ms. */
  get totalLostMs() {
    return this.rows.reduce((sum, row) => sum + (row.ongoing ? 0 : row.lostMs), 0);
  }

  /** A hello arrived: a new connection, possibly to another backend. `attempt` is the
   * reconnect attempt that succeeded, when the connection knows it; `handover` is set when the
   * connection moved here before closing the old one ({ reason, from, overlap }). */
  connected(hello, t, attempt = null, handover = null) {
    const format = `${hello.codec}/${hello.sample_rate}/${hello.channels}/${hello.chunk_frames}`;
    if (this.format !== null && format !== this.format) {
      this.last = null; // not comparable
      this.recent.clear();
    }
    this.format = format;
    this.chunkMs = chunkDurationMs(hello);
    this.handover = null;
    if (handover) this.counters.handovers += 1;
    if (isOutage(this.open)) {
      this.open.instanceAfter = hello.instance;
      if (attempt) this.open.detail = `${this.open.detail ?? 'closed'}; back on attempt ${attempt}`;
      else if (handover) this.open.detail = `${this.open.detail}; moved to ${hello.instance} before closing the old connection`;
      this.counters.reconnects += 1;
    } else if (handover) {
      // Logged at the first chunk, once the sequence numbers say what the move cost.
      this.handover = { why: HANDOVER_WHY[handover.reason] ?? handover.reason, before: this.instance, overlap: handover.overlap ?? 0 };
    } else if (this.instance !== null && hello.instance !== this.instance) {
      // A new backend without a loss we saw (after Stop and Start).
      this.log({ cause: CAUSE.INSTANCE_CHANGE, start: t, durationMs: 0, lostMs: 0, before: this.instance, after: hello.instance });
    }
    this.instance = hello.instance;
    this.hasConnection = true;
    this.firstOfConnection = true;
    this.skipPending = null;
  }

  /**
   * An audio chunk arrived. Returns whether to play it (repeats are dropped) and whether it
   * does not follow the previously played chunk (so the player can smooth the join).
   */
  chunk(seq, producedUs, t) {
    if (this.firstOfConnection) return this.firstChunk(seq, producedUs, t);
    const step = seqAfter(this.last.seq, seq);
    if (step <= 0n) {
      this.counters.duplicates += 1;
      return { play: false, discontinuity: false };
    }
    let missing = Number(step - 1n);
    if (this.skipPending) {
      missing -= Number(seqAfter(this.skipPending.from, this.skipPending.to));
      this.skipPending = null;
    }
    let endsStall = null;
    if (missing > 0 && this.endedStall()) this.foldIntoStall(missing, seq, `${missing} chunks missing`);
    else if (missing > 0) this.sequenceGap(missing, seq, t);
    else if (this.open?.cause === CAUSE.SOURCE_DOWN && this.sourceBack) {
      this.open.measuredBy = MEASURED_BY.SEQUENCE;
      this.close(this.open, t, t - this.open.start, 0);
    } else if (this.open?.cause === CAUSE.STALL) {
      // The stalled connection delivered again, and nothing is missing: late, not lost.
      endsStall = this.open;
      this.closeMeasured(endsStall, seq, t, 0, 'audio came again on the same connection');
    }
    this.accept(seq, producedUs);
    this.stallEnd = endsStall;
    return { play: true, discontinuity: step !== 1n };
  }

  firstChunk(seq, producedUs, t) {
    if (this.last !== null && this.recent.get(seq) === producedUs) {
      // The very chunk already played (number and stamp): the burst repeats it. Its stamp is
      // not compared with the last chunk's, which a capture device's clock may have moved away
      // from the numbers by more than the tolerance (a software device on a busy machine).
      this.counters.duplicates += 1;
      return { play: false, discontinuity: false };
    }
    const continues = this.last !== null && this.sameStream(seq, producedUs);
    let lostChunks = null;
    if (continues) {
      const step = seqAfter(this.last.seq, seq);
      if (step <= 0n) {
        // The burst repeats audio already played before the reconnect.
        this.counters.duplicates += 1;
        return { play: false, discontinuity: false };
      }
      lostChunks = Number(step - 1n);
    }
    this.firstOfConnection = false;
    const handover = this.handover;
    this.handover = null;
    if (isOutage(this.open)) {
      const row = this.open;
      const durationMs = t - row.start;
      // Sequence numbers measure the loss exactly when the stream continued (they follow the
      // clock, across restarts and instances); otherwise (clocks that disagree, a new format) the
      // time without audio is the best measure there is.
      const lostMs = lostChunks !== null ? lostChunks * this.chunkMs : durationMs;
      row.measuredBy = lostChunks !== null ? MEASURED_BY.SEQUENCE : MEASURED_BY.CLOCK;
      this.noteSeqs(row, seq);
      if (lostChunks !== null && lostChunks > 0) {
        this.counters.gaps += 1;
        this.counters.gapMs += lostMs;
      }
      this.close(row, t, durationMs, lostMs);
    } else if (handover && lostChunks > 0 && handover.before === this.instance && this.endedStall()) {
      this.foldIntoStall(lostChunks, seq, `${handover.why}, ${lostChunks} chunks missing at the splice`);
    } else if (handover) {
      this.handedOver(handover, lostChunks, seq, t);
    } else if (lostChunks) {
      this.sequenceGap(lostChunks, seq, t);
    }
    this.accept(seq, producedUs);
    return { play: true, discontinuity: lostChunks !== 0 };
  }

  /**
   * The first chunk after a make-before-break move: logged as an instance change with what the
   * splice cost by sequence numbers (0 ms when the new stream continued at the next chunk), or,
   * on the same instance, only if it cost anything.
   */
  handedOver({ why, before, overlap }, lostChunks, seq, t) {
    const lostMs = (lostChunks ?? 0) * this.chunkMs;
    if (lostMs > 0) {
      this.counters.gaps += 1;
      this.counters.gapMs += lostMs;
    }
    if (before === this.instance && lostMs === 0) return;
    const how =
      lostChunks === null
        ? 'sequence numbers not comparable'
        : lostChunks === 0
          ? `spliced in at seq ${seq}${overlap ? `, ${overlap} repeated chunks dropped` : ''}`
          : `${lostChunks} chunks missing at the splice`;
    const row = this.log({
      cause: before === this.instance ? CAUSE.SEQUENCE_GAP : CAUSE.INSTANCE_CHANGE,
      start: t - lostMs,
      durationMs: lostMs, // no time without audio: the streams are joined (with a fade over a gap)
      lostMs,
      before,
      after: this.instance,
      detail: `${why}; ${how}`,
      measuredBy: lostChunks === null ? MEASURED_BY.CLOCK : MEASURED_BY.SEQUENCE,
    });
    this.noteSeqs(row, seq);
  }

  /** The connection delivered nothing for `silentMs` since `since` while open: it stalled. An
   * underrun it caused is the same interruption, so that row becomes the stall's. */
  stalled(since, t, silentMs, thresholdMs) {
    if (!this.hasConnection) return;
    const detail = `no audio for ${Math.round(silentMs)} ms (threshold ${Math.round(thresholdMs)} ms)`;
    const row = this.open;
    if (row?.cause === CAUSE.BUFFER_UNDERRUN) {
      row.cause = CAUSE.STALL;
      row.start = Math.min(row.start, since);
      row.detail = detail;
      this.counters.underrunsLogged -= 1;
      this.version += 1;
      return;
    }
    if (row) return; // inside another interruption (a source down) it is part of that one
    this.openRow({ cause: CAUSE.STALL, start: since, detail });
  }

  /** Records the sequence numbers that measured a row: the last played and the next. */
  noteSeqs(row, seq) {
    row.seqBefore = this.last ? String(this.last.seq) : null;
    row.seqAfter = String(seq);
  }

  /** Closes `row` measured by sequence numbers: it lasted until `t` and lost `lostMs`. */
  closeMeasured(row, seq, t, lostMs, note) {
    row.measuredBy = MEASURED_BY.SEQUENCE;
    row.detail = `${row.detail ? `${row.detail}; ` : ''}${note}`;
    this.noteSeqs(row, seq);
    this.close(row, t, t - row.start, lostMs);
  }

  /** Whether `seq` can be compared with the last chunk: both advance at one chunk per chunk_ms. */
  sameStream(seq, producedUs) {
    const bySeq = Number(seqAfter(this.last.seq, seq));
    const byTime = Number(producedUs - this.last.producedUs) / 1000 / this.chunkMs;
    return Math.abs(bySeq - byTime) <= SEQ_TIME_TOLERANCE_CHUNKS;
  }

  /**
   * Whether the last chunk played is the one that ended a stall as late, not lost (and nothing
   * reset the stream since). A server held up between producing a chunk and sending it delivers
   * that chunk when it wakes, and then the chunk its clock says: what it did not produce
   * meanwhile shows only at the next chunk, on the same connection or on the one the stall moved
   * to.
   */
  endedStall() {
    return this.stallEnd !== null && this.last !== null;
  }

  /** Those missing chunks are the stall's loss: one interruption, one row. */
  foldIntoStall(missing, seq, how) {
    const row = this.stallEnd;
    const lostMs = missing * this.chunkMs;
    this.counters.gaps += 1;
    this.counters.gapMs += lostMs;
    row.lostMs += lostMs;
    row.detail = `${row.detail}; then ${how}`;
    row.seqAfter = String(seq);
    this.version += 1;
  }

  accept(seq, producedUs) {
    this.stallEnd = null; // only the chunk that ends a stall sets it, after this
    this.last = { seq, producedUs };
    this.recent.set(seq, producedUs);
    if (this.recent.size > RECENT_CHUNKS) this.recent.delete(this.recent.keys().next().value);
    this.counters.chunks += 1;
  }

  sequenceGap(missing, seq, t) {
    const lostMs = missing * this.chunkMs;
    this.counters.gaps += 1;
    this.counters.gapMs += lostMs;
    if (this.open?.cause === CAUSE.SOURCE_DOWN || this.open?.cause === CAUSE.STALL) {
      // The gap is the audio the source did not produce while it was down, or that a stalled
      // server skipped when it woke (it resumes at the chunk the clock says).
      this.closeMeasured(this.open, seq, t, lostMs, `${missing} chunks missing`);
      return;
    }
    this.closeUnderrun(t);
    const row = this.log({
      cause: CAUSE.SEQUENCE_GAP,
      start: t - lostMs,
      durationMs: lostMs,
      lostMs,
      detail: `${missing} chunks missing`,
      measuredBy: MEASURED_BY.SEQUENCE,
    });
    this.noteSeqs(row, seq);
  }

  /** The server dropped chunks `from` up to `to` for this listener (it fell behind). */
  skipped(from, to, t) {
    const chunks = Number(seqAfter(from, to));
    if (!(chunks > 0)) return;
    const lostMs = chunks * (this.chunkMs ?? 0);
    this.counters.skips += 1;
    this.counters.skipMs += lostMs;
    this.skipPending = { from, to };
    this.closeUnderrun(t);
    const row = this.log({ cause: CAUSE.SERVER_SKIP, start: t, durationMs: lostMs, lostMs, detail: `chunks ${from}–${to - 1n}`, measuredBy: MEASURED_BY.SERVER });
    row.seqBefore = String(BigInt.asUintN(64, from - 1n));
    row.seqAfter = String(to);
  }

  /** A `source` control message: the server's source went down, came back or ended. */
  source(state, reason, t) {
    this.sourceBack = state === 'live';
    if (state === 'down' || state === 'ended') {
      if (this.open?.cause === CAUSE.SOURCE_DOWN) return;
      this.closeUnderrun(t);
      this.openRow({ cause: CAUSE.SOURCE_DOWN, start: t, detail: `${state}${reason ? `: ${reason}` : ''}` });
    }
    // 'live': the row closes at the next chunk, whose sequence gap measures the loss.
  }

  /** The socket closed (or never opened) while the user wanted to listen. */
  disconnected(t, detail) {
    this.hasConnection = false;
    this.handover = null;
    // A failed retry, or a connection lost before any audio came: the same outage goes on.
    if (this.open?.cause === CAUSE.SOCKET_CLOSED) return;
    if (this.open?.cause === CAUSE.STALL) {
      // Moving away from the stall failed; the stall goes on as the outage until audio flows.
      this.open.detail = `${this.open.detail}; then ${detail}`;
      this.version += 1;
      return;
    }
    if (this.open) this.close(this.open, t, t - this.open.start, t - this.open.start);
    this.openRow({ cause: CAUSE.SOCKET_CLOSED, start: t, detail });
  }

  /** The player ran out of audio while playing. Inside another interruption it is part of it. */
  underrunStarted(t) {
    if (!this.hasConnection || this.open || this.firstOfConnection) return;
    this.counters.underrunsLogged += 1;
    this.openRow({ cause: CAUSE.BUFFER_UNDERRUN, start: t });
  }

  /** The player resumed after `silentMs` of silence. */
  underrunEnded(t, silentMs) {
    if (this.open?.cause !== CAUSE.BUFFER_UNDERRUN) return;
    this.open.measuredBy = MEASURED_BY.PLAYER;
    this.close(this.open, t, silentMs, silentMs);
  }

  closeUnderrun(t) {
    if (this.open?.cause === CAUSE.BUFFER_UNDERRUN) {
      this.close(this.open, t, t - this.open.start, t - this.open.start);
    }
  }

  /** The user pressed Stop: whatever is in progress ends now, and nothing after is a loss. */
  stopped(t) {
    if (this.open) {
      const row = this.open;
      row.detail = `${row.detail ? `${row.detail}; ` : ''}ended by Stop`;
      this.close(row, t, t - row.start, t - row.start);
    }
    this.hasConnection = false;
    this.firstOfConnection = false;
    this.handover = null;
    this.last = null;
    this.recent.clear();
  }

  openRow({ cause, start, detail = null }) {
    this.open = this.log({ cause, start, durationMs: null, lostMs: null, detail, ongoing: true });
  }

  close(row, end, durationMs, lostMs) {
    row.measuredBy ??= MEASURED_BY.CLOCK; // unless said otherwise, the loss is the time it lasted
    row.end = end;
    row.durationMs = Math.max(0, durationMs);
    row.lostMs = Math.max(0, lostMs);
    row.ongoing = false;
    if (this.open === row) this.open = null;
    this.version += 1;
  }

  log({ cause, start, durationMs, lostMs, detail = null, ongoing = false, before = this.instance, after, measuredBy = null }) {
    const row = {
      id: this.rows.length + 1,
      start,
      end: ongoing ? null : start + durationMs,
      durationMs,
      lostMs,
      cause,
      instanceBefore: before,
      instanceAfter: after ?? before,
      detail,
      ongoing,
      measuredBy,
      seqBefore: null, // the last chunk played before, and the next one played, as decimal text
      seqAfter: null,
    };
    this.rows.push(row);
    this.version += 1;
    return row;
  }
}

/**
 * Latency (arrival − production, in the server's clock via the ping/pong offset) and RFC 3550
 * interarrival jitter of live chunks. Chunks produced before the hello are the burst: late by
 * design, so they are not counted.
 */
export class LatencyTracker {
  constructor() {
    this.reset(null);
  }

  reset(helloServerMs) {
    this.burstBeforeMs = helloServerMs;
    this.latencyMs = null;
    this.jitterMs = 0;
    this.prev = null;
  }

  add(producedUs, arrivalMs, offsetMs) {
    const producedMs = Number(producedUs) / 1000;
    if (this.burstBeforeMs !== null && producedMs < this.burstBeforeMs) return;
    if (this.prev) {
      const d = arrivalMs - this.prev.arrivalMs - (producedMs - this.prev.producedMs);
      this.jitterMs += (Math.abs(d) - this.jitterMs) / 16;
    }
    this.prev = { producedMs, arrivalMs };
    if (offsetMs === null) return;
    const sample = arrivalMs + offsetMs - producedMs;
    // Smoothed over ~10 chunks so the panel reads steadily; the jitter figure shows the spread.
    this.latencyMs = this.latencyMs === null ? sample : this.latencyMs + (sample - this.latencyMs) / 10;
  }
}
