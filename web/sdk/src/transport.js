// The two carriages of the protocol's JSON frames: a WebSocket (text frames), and HTTP
// long-polling (`/v1/poll`, docs/protocol.md "Long-poll transport"). Both look alike to the
// client: `open()` makes the carriage ready for a CONNECT, `connect(frame)` sends it and answers
// the CONNACK, `start(onFrame, onClose)` hands over every later frame, `send(frame)` queues one,
// `close()` ends it.

import { ErrorCode, TidingsError } from './codes.js';

/**
 * @typedef {Record<string, any>} Frame a protocol frame in the proto3 JSON mapping
 * @typedef {{ code: number, message: string }} CloseReason
 * @typedef {(frame: Frame) => void} FrameHandler
 * @typedef {(reason: CloseReason) => void} CloseHandler
 * @typedef {{ ws: string, poll: string, http: string }} Node a server node's endpoints
 */

/** Closed from this side: no reason to report. */
const CLOSED_HERE = { code: ErrorCode.CLIENT_DISCONNECTED, message: 'closed by the client' };

/**
 * What both transports share: the handlers, and the frames that arrive before `start`.
 */
class Carriage {
  constructor() {
    /** @type {FrameHandler | null} */
    this.onFrame = null;
    /** @type {CloseHandler | null} */
    this.onClose = null;
    /** Frames received after the CONNACK and before `start`. @type {Frame[]} */
    this.early = [];
    /** The CONNACK's waiter. @type {{ resolve: (f: Frame) => void, reject: (e: Error) => void } | null} */
    this.handshake = null;
    this.closed = false;
    /** @type {CloseReason | null} why it closed before `start` */
    this.closedEarly = null;
  }

  /**
   * Hands every later frame to `onFrame`, in order, and the end to `onClose` (once).
   * @param {FrameHandler} onFrame
   * @param {CloseHandler} onClose
   */
  start(onFrame, onClose) {
    this.onFrame = onFrame;
    this.onClose = onClose;
    const early = this.early;
    this.early = [];
    for (const f of early) {
      if (this.onFrame !== onFrame) return;
      onFrame(f);
    }
    if (this.closedEarly) {
      const r = this.closedEarly;
      this.closedEarly = null;
      onClose(r);
    }
  }

  /** @param {Frame} frame */
  deliver(frame) {
    if (this.handshake) {
      const h = this.handshake;
      this.handshake = null;
      h.resolve(frame);
    } else if (this.onFrame) {
      this.onFrame(frame);
    } else {
      this.early.push(frame);
    }
  }

  /** @param {CloseReason} reason */
  ended(reason) {
    if (this.closed) return;
    this.closed = true;
    if (this.handshake) {
      const h = this.handshake;
      this.handshake = null;
      h.reject(new TidingsError(ErrorCode.RC_SOCKET_DISCONNECTED, reason.message));
    }
    if (this.onClose) {
      const handler = this.onClose;
      this.onClose = null;
      this.onFrame = null;
      handler(reason);
    } else if (reason !== CLOSED_HERE) {
      this.closedEarly = reason;
    }
  }

  /**
   * Waits for the first frame from the server (the CONNACK), at most `timeoutMs`.
   * @param {number} timeoutMs
   * @returns {Promise<Frame>}
   */
  firstFrame(timeoutMs) {
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        this.handshake = null;
        reject(new TidingsError(ErrorCode.RC_CONN_ACK_TIMEOUT, 'no CONNACK in time'));
      }, timeoutMs);
      this.handshake = {
        resolve: (f) => {
          clearTimeout(timer);
          resolve(f);
        },
        reject: (e) => {
          clearTimeout(timer);
          reject(e);
        },
      };
    });
  }
}

/**
 * The protocol over one WebSocket, in JSON text frames.
 */
export class WebSocketTransport extends Carriage {
  /**
   * @param {string} url the node's `ws` endpoint
   * @param {any} WebSocketImpl a WebSocket constructor (the browser's, or `ws` in Node)
   */
  constructor(url, WebSocketImpl) {
    super();
    this.kind = /** @type {const} */ ('websocket');
    this.url = url;
    this.WebSocketImpl = WebSocketImpl;
    /** @type {any} */
    this.socket = null;
    /** @type {ReturnType<typeof setTimeout> | undefined} */
    this.openTimer = undefined;
  }

  /**
   * Opens the socket; resolves once it is open.
   * @param {number} timeoutMs
   * @returns {Promise<void>}
   */
  open(timeoutMs) {
    return new Promise((resolve, reject) => {
      let socket;
      try {
        socket = new this.WebSocketImpl(this.url);
      } catch (e) {
        reject(new TidingsError(ErrorCode.RC_SOCKET_NOT_CREATED, `cannot open ${this.url}: ${errorText(e)}`));
        return;
      }
      this.socket = socket;
      let opened = false;
      const timer = setTimeout(() => {
        if (opened) return;
        this.closed = true;
        this.abort();
        reject(new TidingsError(ErrorCode.RC_SOCKET_NOT_CREATED, `${this.url} did not open in time`));
      }, timeoutMs);
      this.openTimer = timer;
      socket.onopen = () => {
        opened = true;
        clearTimeout(timer);
        resolve();
      };
      socket.onerror = () => {
        // A close event follows, and says more.
      };
      socket.onclose = (/** @type {{ code?: number, reason?: string }} */ ev) => {
        clearTimeout(timer);
        const message = `WebSocket closed (${ev?.code ?? 'no code'}${ev?.reason ? `: ${ev.reason}` : ''})`;
        if (!opened) {
          this.closed = true;
          reject(new TidingsError(ErrorCode.RC_SOCKET_NOT_CREATED, `cannot open ${this.url}: ${message}`));
          return;
        }
        this.ended({ code: ErrorCode.RC_SOCKET_DISCONNECTED, message });
      };
      socket.onmessage = (/** @type {{ data: unknown }} */ ev) => {
        // Only text frames carry JSON; this client never asks for binary ones.
        if (typeof ev.data !== 'string') return;
        let frame;
        try {
          frame = JSON.parse(ev.data);
        } catch {
          this.fail({ code: ErrorCode.MALFORMED_FRAME, message: 'undecodable frame from the server' });
          return;
        }
        if (frame && typeof frame === 'object') this.deliver(frame);
      };
    });
  }

  /**
   * Sends the CONNECT and answers the server's first frame (the CONNACK, or a DISCONNECT).
   * @param {Frame} frame
   * @param {number} timeoutMs
   * @returns {Promise<Frame>}
   */
  connect(frame, timeoutMs) {
    const first = this.firstFrame(timeoutMs);
    this.send(frame);
    return first;
  }

  /** @param {Frame} frame */
  send(frame) {
    if (this.closed || !this.socket) return;
    try {
      this.socket.send(JSON.stringify(frame));
    } catch (e) {
      this.fail({ code: ErrorCode.RC_MSG_SEND_FAIL, message: `send failed: ${errorText(e)}` });
    }
  }

  /**
   * Ends the connection for a reason found on this side, and reports it.
   * @param {CloseReason} reason
   */
  fail(reason) {
    this.abort();
    this.ended(reason);
  }

  /** Closes the socket without reporting. */
  abort() {
    clearTimeout(this.openTimer);
    const s = this.socket;
    if (!s) return;
    s.onopen = s.onmessage = s.onclose = null;
    // Not null: closing a socket that is still opening makes some implementations (Node's `ws`)
    // raise an error event, which must have a listener.
    s.onerror = () => {};
    try {
      s.close();
    } catch {
      // Closing a socket that never opened may throw; it is gone either way.
    }
  }

  /**
   * Says goodbye (if given a frame) and closes. Nothing is reported.
   * @param {Frame} [goodbye]
   * @returns {Promise<void>}
   */
  async close(goodbye) {
    if (goodbye && !this.closed) this.send(goodbye);
    this.onFrame = null;
    this.onClose = null;
    this.ended(CLOSED_HERE);
    this.abort();
  }
}

/**
 * The protocol over HTTP long-polling: numbered batches, each kept by the server until the next
 * poll's `after` acknowledges it, so a poll whose answer was lost is repeated with the same
 * `after` and gets the same batch again.
 */
export class PollTransport extends Carriage {
  /**
   * @param {Node} node
   * @param {typeof fetch} fetchImpl
   * @param {{ waitMs: number, probe: boolean }} settings `probe`: `open()` checks the node answers
   */
  constructor(node, fetchImpl, settings) {
    super();
    this.kind = /** @type {const} */ ('polling');
    this.node = node;
    this.fetch = fetchImpl;
    this.waitMs = settings.waitMs;
    this.probe = settings.probe;
    /** @type {string | null} */
    this.session = null;
    /** The number of the last batch received. */
    this.after = 0;
    /** Frames waiting to be posted. @type {Frame[]} */
    this.outgoing = [];
    this.posting = false;
    /** Aborts the waiting poll. */
    this.aborter = new AbortController();
    /** @type {Promise<void>} resolves once every queued frame was posted */
    this.drained = Promise.resolve();
  }

  /**
   * With several nodes to race, checks that this one answers (its `/navi`, which needs no
   * authentication); with one, there is nothing to race and the CONNECT itself finds out.
   * @param {number} timeoutMs
   * @returns {Promise<void>}
   */
  async open(timeoutMs) {
    if (!this.probe) return;
    const res = await this.request(`${this.node.http}/navi`, { method: 'GET' }, timeoutMs).catch((e) => {
      throw new TidingsError(ErrorCode.RC_SOCKET_NOT_CREATED, `cannot reach ${this.node.http}: ${errorText(e)}`);
    });
    if (!res.ok) throw new TidingsError(ErrorCode.RC_SOCKET_NOT_CREATED, `${this.node.http} answered ${res.status}`);
  }

  /**
   * Opens a session with the CONNECT; answers the CONNACK.
   * @param {Frame} frame
   * @param {number} timeoutMs
   * @returns {Promise<Frame>}
   */
  async connect(frame, timeoutMs) {
    let res;
    try {
      res = await this.request(
        this.node.poll,
        { method: 'POST', headers: { 'Content-Type': 'application/json' }, body: JSON.stringify(frame) },
        timeoutMs,
      );
    } catch (e) {
      this.closed = true;
      if (isAbort(e)) throw new TidingsError(ErrorCode.RC_CONN_ACK_TIMEOUT, 'no CONNACK in time');
      throw new TidingsError(ErrorCode.RC_SOCKET_NOT_CREATED, `cannot reach ${this.node.poll}: ${errorText(e)}`);
    }
    const body = await res.json().catch(() => null);
    if (!res.ok || !body) {
      this.closed = true;
      const code = Number(body?.code ?? ErrorCode.RC_SOCKET_NOT_CREATED);
      throw new TidingsError(code, body?.message ?? `${this.node.poll} answered ${res.status}`);
    }
    const first = Array.isArray(body.frames) ? body.frames[0] : undefined;
    if (!first) {
      this.closed = true;
      throw new TidingsError(ErrorCode.RC_SOCKET_NOT_CREATED, 'the long-poll answer held no CONNACK');
    }
    if (typeof body.session === 'string') {
      this.session = body.session;
      this.after = Number(body.batch ?? 0);
    } else {
      this.closed = true;
    }
    return first;
  }

  /**
   * @param {FrameHandler} onFrame
   * @param {CloseHandler} onClose
   */
  start(onFrame, onClose) {
    super.start(onFrame, onClose);
    if (!this.closed) this.loop();
  }

  /** The session's URL. */
  get url() {
    return `${this.node.poll}/${this.session}`;
  }

  /** Polls until the session ends. */
  async loop() {
    let failures = 0;
    while (!this.closed) {
      let res;
      try {
        res = await this.request(
          `${this.url}?after=${this.after}&wait=${this.waitMs}`,
          { method: 'GET', signal: this.aborter.signal },
          this.waitMs + 15_000,
        );
      } catch (e) {
        if (this.closed) return;
        // The answer was lost: ask again with the same `after`, and the server gives the same
        // batch again. A node that stays unreachable has lost the session.
        failures += 1;
        if (failures > 3) {
          this.fail({ code: ErrorCode.RC_SOCKET_DISCONNECTED, message: `polling failed: ${errorText(e)}` });
          return;
        }
        await sleep(250 * failures);
        continue;
      }
      if (this.closed) return;
      const body = await res.json().catch(() => null);
      if (!res.ok || !body) {
        const code = Number(body?.code ?? ErrorCode.RC_SOCKET_DISCONNECTED);
        this.fail({ code, message: body?.message ?? `poll answered ${res.status}` });
        return;
      }
      failures = 0;
      const frames = Array.isArray(body.frames) ? body.frames : [];
      if (frames.length === 0) continue;
      this.after = Number(body.batch);
      for (const f of frames) {
        if (this.closed) return;
        if (f && typeof f === 'object' && f.disconnect) {
          // The session's last frame: acknowledge the batch so the server forgets the session.
          this.acknowledgeLast();
        }
        this.deliver(f);
      }
    }
  }

  /** One last poll that acknowledges the batch holding the server's DISCONNECT. */
  acknowledgeLast() {
    const url = `${this.url}?after=${this.after}&wait=0`;
    this.request(url, { method: 'GET' }, 5_000).catch(() => {
      // The session expires by itself anyway.
    });
  }

  /**
   * Queues a frame; frames queued together go in one request, and requests go one at a time so
   * the server handles the frames in the order they were sent.
   * @param {Frame} frame
   */
  send(frame) {
    if (this.closed || !this.session) return;
    this.outgoing.push(frame);
    if (!this.posting) {
      this.posting = true;
      this.drained = new Promise((resolve) => queueMicrotask(() => this.post().then(resolve)));
    }
  }

  /** Posts the queued frames, at most 64 a request (the server's limit). */
  async post() {
    while (this.outgoing.length > 0 && !this.closed) {
      const batch = this.outgoing.splice(0, 64);
      let res;
      try {
        res = await this.request(
          this.url,
          {
            method: 'POST',
            headers: { 'Content-Type': 'application/json' },
            body: JSON.stringify(batch.length === 1 ? batch[0] : batch),
          },
          15_000,
        );
      } catch (e) {
        // Whether the frames arrived is unknown: this connection is over, and the client's
        // reconnect resends what was not answered.
        this.fail({ code: ErrorCode.RC_MSG_SEND_FAIL, message: `send failed: ${errorText(e)}` });
        break;
      }
      if (res.status !== 204) {
        const body = await res.json().catch(() => null);
        const code = Number(body?.code ?? ErrorCode.RC_MSG_SEND_FAIL);
        this.fail({ code, message: body?.message ?? `send answered ${res.status}` });
        break;
      }
    }
    this.posting = false;
  }

  /**
   * Ends the transport for a reason found on this side, and reports it.
   * @param {CloseReason} reason
   */
  fail(reason) {
    this.aborter.abort();
    this.ended(reason);
  }

  /**
   * Sends the goodbye (after whatever is queued), stops polling. Nothing is reported.
   * @param {Frame} [goodbye]
   * @returns {Promise<void>}
   */
  async close(goodbye) {
    this.onFrame = null;
    this.onClose = null;
    if (goodbye && !this.closed && this.session) {
      this.send(goodbye);
      await Promise.race([this.drained, sleep(2_000)]);
    }
    this.ended(CLOSED_HERE);
    this.aborter.abort();
  }

  /**
   * A fetch with a deadline.
   * @param {string} url
   * @param {RequestInit} init
   * @param {number} timeoutMs
   * @returns {Promise<Response>}
   */
  async request(url, init, timeoutMs) {
    const deadline = new AbortController();
    const timer = setTimeout(() => deadline.abort(), timeoutMs);
    const outer = init.signal;
    const onOuter = () => deadline.abort();
    outer?.addEventListener('abort', onOuter);
    try {
      return await this.fetch(url, { ...init, signal: deadline.signal });
    } finally {
      clearTimeout(timer);
      outer?.removeEventListener('abort', onOuter);
    }
  }
}

/**
 * @param {number} ms
 * @returns {Promise<void>}
 */
export function sleep(ms) {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

/** @param {unknown} e */
export function errorText(e) {
  return e instanceof Error ? e.message : String(e);
}

/** @param {unknown} e */
function isAbort(e) {
  return e instanceof Error && e.name === 'AbortError';
}
