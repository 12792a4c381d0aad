// A WebSocket stand-in for node tests of the connection: the test plays the server (or the
// network) by calling accept(), audio(), control() and drop(), and reads what the page sent and
// how it closed. Every socket created is kept in ScriptedSocket.all, in order.

import { HEADER_BYTES } from '../../../www/wire.js';

export class ScriptedSocket {
  static all = [];

  constructor(url) {
    this.url = url;
    this.readyState = 0;
    this.sent = [];
    this.closedByPage = null;
    ScriptedSocket.all.push(this);
  }

  send(text) {
    this.sent.push(JSON.parse(text));
  }

  close(code, reason) {
    this.closedByPage = { code, reason };
    this.readyState = 3;
  }

  // What the server (or the network) does:
  accept(instance = 'A', extra = {}) {
    this.readyState = 1;
    this.control({
      type: 'hello', version: 1, codec: 'pcm_s16le', sample_rate: 44100, channels: 1, chunk_frames: 882, chunk_ms: 20,
      instance, seq: 7, server_time_ms: Date.now(), ...extra,
    });
  }

  /** Sends chunk `seq` (one mono frame of audio is enough for the connection). */
  audio(seq) {
    const buffer = new ArrayBuffer(HEADER_BYTES + 2);
    const view = new DataView(buffer);
    view.setBigUint64(0, BigInt(seq), true);
    view.setBigUint64(8, BigInt(Date.now()) * 1000n, true);
    this.onmessage?.({ data: buffer });
  }

  control(message) {
    this.onmessage?.({ data: JSON.stringify(message) });
  }

  drop(code = 1006) {
    this.readyState = 3;
    this.onerror?.({});
    this.onclose?.({ code, reason: '' });
  }
}
