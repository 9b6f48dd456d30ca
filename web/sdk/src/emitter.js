// A small event emitter. A listener that throws does not stop the others, nor the client: the
// error goes to the `error` listeners, or, when there are none, is rethrown on its own task so
// that it shows as an uncaught error without breaking the delivery in progress.

export class Emitter {
  constructor() {
    /** @type {Map<string, Set<(...args: any[]) => void>>} */
    this.listeners = new Map();
  }

  /**
   * @param {string} event
   * @param {(...args: any[]) => void} fn
   * @returns {() => void} removes the listener
   */
  on(event, fn) {
    let set = this.listeners.get(event);
    if (!set) {
      set = new Set();
      this.listeners.set(event, set);
    }
    set.add(fn);
    return () => this.off(event, fn);
  }

  /**
   * @param {string} event
   * @param {(...args: any[]) => void} fn
   */
  off(event, fn) {
    this.listeners.get(event)?.delete(fn);
  }

  /**
   * @param {string} event
   * @param {...unknown} args
   */
  emit(event, ...args) {
    const set = this.listeners.get(event);
    if (!set) return;
    for (const fn of [...set]) {
      try {
        fn(...args);
      } catch (e) {
        this.report(e);
      }
    }
  }

  /** @param {unknown} error */
  report(error) {
    const handlers = this.listeners.get('error');
    if (handlers && handlers.size > 0) {
      for (const fn of [...handlers]) {
        try {
          fn(error);
        } catch {
          // An error listener that throws has nowhere left to report to.
        }
      }
      return;
    }
    setTimeout(() => {
      throw error;
    }, 0);
  }
}
