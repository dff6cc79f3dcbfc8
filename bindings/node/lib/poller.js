'use strict';
// The one output poller of the process. A blocking read per execution would hold a libuv
// worker thread each (4 by default), so 4 silent commands would starve every other async
// call; instead one poll(2) on a worker thread watches the descriptors of all live
// executions, plus an eventfd of its own that wakes it when that set changes. Ready
// executions are then drained on the main thread with non-blocking reads.

const { native } = require('./native');

const POLLIN = 0x1;
const EFD_NONBLOCK = 0o4000;
const EFD_CLOEXEC = 0o2000000;
const ONE = Buffer.from([1, 0, 0, 0, 0, 0, 0, 0]); // the 8-byte counter increment of an eventfd

/**
 * What the poller needs of an execution: `fd` (readable while output or its end is pending),
 * `wantsOutput` (false while a consumer applies backpressure) and `drain()` (reads what is
 * pending without blocking).
 * @typedef {{ fd: number, wantsOutput: boolean, drain(): void }} Pollable
 */

class Poller {
  /** @type {Set<Pollable>} executions whose output has not ended */
  #live = new Set();
  /** 'idle' (no poll pending), 'polling' (a poll runs on a worker) or 'dispatching'. */
  #phase = 'idle';
  #wakeFd = -1;

  /** Watches `execution` until `delete`; its output is pending until then. */
  add(execution) {
    this.#live.add(execution);
    this.wake();
  }

  /** Stops watching `execution` (its output ended, or it was closed). */
  delete(execution) {
    if (this.#live.delete(execution)) this.wake();
  }

  /** Makes the poller rebuild its descriptor set: an execution came, went or wants output again. */
  wake() {
    if (this.#phase === 'polling') native().libc.write(this.#wakeFd, ONE, ONE.length);
    else if (this.#phase === 'idle') this.#poll();
    // 'dispatching': the set is rebuilt when the dispatch ends.
  }

  #poll() {
    // No execution: no pending call, so the process can exit.
    if (this.#live.size === 0) return;
    const { libc } = native();
    if (this.#wakeFd < 0) this.#wakeFd = libc.eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
    if (this.#wakeFd < 0) throw new Error('boxlite: eventfd() failed for the output poller');
    const watched = [...this.#live].filter((e) => e.wantsOutput);
    const fds = [this.#wakeFd, ...watched.map((e) => e.fd)].map((fd) => ({ fd, events: POLLIN, revents: 0 }));
    this.#phase = 'polling';
    libc.poll.async(fds, fds.length, -1, (error, ready) => {
      this.#phase = 'dispatching';
      try {
        // A failed poll (EINTR is the only expected failure) just polls again.
        if (!error && ready > 0) this.#dispatch(fds, watched);
      } finally {
        this.#phase = 'idle';
        this.#poll();
      }
    });
  }

  #dispatch(fds, watched) {
    if (fds[0].revents !== 0) {
      // One read resets the eventfd's counter however many wake-ups it holds.
      native().libc.read(this.#wakeFd, Buffer.alloc(8), 8);
    }
    for (let i = 0; i < watched.length; i++) {
      // An execution closed meanwhile is skipped: its descriptor is no longer its own.
      if (fds[i + 1].revents !== 0 && this.#live.has(watched[i])) watched[i].drain();
    }
  }
}

/** The process's poller. */
const poller = new Poller();

module.exports = { poller };
