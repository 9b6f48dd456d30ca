// WebSocket implementations for the tests, passed to the SDK through its `WebSocket` option:
// the `ws` package as it is, one that can hold back or cut what the real server sends (fault
// injection on a real connection, as a lossy network would), and one that never opens.

import WebSocket from 'ws';

export { WebSocket };

/**
 * A WebSocket class over `ws` whose sockets a test controls, and the control.
 */
export function controlledWebSocket() {
  /** @type {ControlledSocket[]} */
  const sockets = [];
  const control = {
    sockets,
    /** Frames the client sent, parsed, in order. @type {any[]} */
    sent: [],
    /** Frames received while held, waiting to be handed to the client. @type {(() => void)[]} */
    held: [],
    holding: false,
    /** Inbound frames for which this answers true are dropped, as a lost packet. @type {((frame: any) => boolean) | null} */
    drop: /** @type {((frame: any) => boolean) | null} */ (null),
    /** Holds back every frame from the server until `release`. */
    hold() {
      control.holding = true;
    },
    /**
     * Hands the held frames over, in the order given by `order` (indices into the held list;
     * all of them in arrival order by default).
     * @param {number[]} [order]
     */
    release(order) {
      control.holding = false;
      const held = control.held;
      control.held = [];
      for (const i of order ?? held.map((_, i) => i)) held[i]();
    },
    /** The socket in use (the newest). */
    get current() {
      return sockets[sockets.length - 1];
    },
    /** Cuts the current connection as a network failure would (no close handshake). */
    cut() {
      control.current.inner.terminate();
    },
  };

  class ControlledSocket {
    /** @param {string} url */
    constructor(url) {
      this.inner = new WebSocket(url);
      /** @type {((ev: any) => void) | null} */
      this.onopen = null;
      /** @type {((ev: any) => void) | null} */
      this.onmessage = null;
      /** @type {((ev: any) => void) | null} */
      this.onclose = null;
      /** @type {((ev: any) => void) | null} */
      this.onerror = null;
      sockets.push(this);
      this.inner.onopen = (ev) => this.onopen?.(ev);
      this.inner.onerror = (ev) => this.onerror?.(ev);
      this.inner.onclose = (ev) => this.onclose?.({ code: ev.code, reason: ev.reason });
      this.inner.onmessage = (ev) => {
        const frame = JSON.parse(String(ev.data));
        if (control.drop?.(frame)) return;
        const deliver = () => this.onmessage?.({ data: ev.data });
        if (control.holding) control.held.push(deliver);
        else deliver();
      };
    }

    /** @param {string} data */
    send(data) {
      control.sent.push(JSON.parse(data));
      this.inner.send(data);
    }

    close() {
      this.inner.close();
    }
  }

  return { WebSocket: ControlledSocket, control };
}

/**
 * A WebSocket that never opens: as a proxy that drops the upgrade, or a network that blocks it.
 * `attempts` counts the sockets made.
 */
export function failingWebSocket() {
  const counter = { attempts: 0 };
  class FailingSocket {
    /** @param {string} url */
    constructor(url) {
      counter.attempts += 1;
      this.url = url;
      /** @type {((ev: any) => void) | null} */
      this.onopen = null;
      /** @type {((ev: any) => void) | null} */
      this.onmessage = null;
      /** @type {((ev: any) => void) | null} */
      this.onclose = null;
      /** @type {((ev: any) => void) | null} */
      this.onerror = null;
      setTimeout(() => {
        this.onerror?.({ type: 'error' });
        this.onclose?.({ code: 1006, reason: '' });
      }, 5);
    }

    send() {
      throw new Error('not open');
    }

    close() {}
  }
  return { WebSocket: FailingSocket, counter };
}
