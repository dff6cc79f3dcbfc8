// Type definitions for boxlite: embeddable microVMs through libboxlite's C ABI.

/// <reference types="node" />

import { Readable, Writable } from 'node:stream';

/** The values of `enum boxlite_status`. */
export declare const Status: Readonly<{
  BOXLITE_OK: 0;
  BOXLITE_INVALID_ARGUMENT: 1;
  BOXLITE_NOT_FOUND: 2;
  BOXLITE_ALREADY_EXISTS: 3;
  BOXLITE_INVALID_STATE: 4;
  BOXLITE_TIMEOUT: 5;
  BOXLITE_GUEST_ERROR: 6;
  BOXLITE_IO: 7;
  BOXLITE_INTERNAL: 8;
  BOXLITE_INVALID_HANDLE: 9;
  BOXLITE_ASSET_MISSING: 10;
  BOXLITE_START_FAILED: 11;
}>;

/** A status name such as 'BOXLITE_NOT_FOUND' ('BOXLITE_UNKNOWN' for a value the library does not know). */
export type StatusName = keyof typeof Status | 'BOXLITE_UNKNOWN';

/** The library's name of a status. Loads the library. */
export declare function statusName(status: number): StatusName;

/** A failed libboxlite call. */
export declare class BoxliteError extends Error {
  constructor(status: number, message: string);
  readonly name: 'BoxliteError';
  /** The status name, e.g. 'BOXLITE_NOT_FOUND'. */
  readonly code: StatusName;
  /** The status number. */
  readonly status: number;
}

/** An operation cancelled through an AbortSignal. */
export declare class AbortError extends Error {
  constructor(message?: string, options?: { cause?: unknown });
  readonly name: 'AbortError';
  readonly code: 'ABORT_ERR';
}

/** The library's version, e.g. '0.1.0'. Loads the library (throws if it cannot be found). */
export declare function version(): string;
/** The ABI version the loaded library implements. */
export declare function abiVersion(): number;
/** The path of the loaded libboxlite.so. */
export declare function libraryPath(): string;

export type BoxState = 'configured' | 'starting' | 'running' | 'stopping' | 'stopped' | 'failed';

export interface RuntimeOptions {
  /** Home folder (default: $BOXLITE_HOME, else $XDG_DATA_HOME/boxlite, else ~/.local/share/boxlite). */
  home?: string;
  /** The boxlite-shim binary (default: searched). */
  shim?: string;
  /** The guest kernel (default: searched). */
  kernel?: string;
  /** The default initramfs (default: searched). */
  initrd?: string;
}

export interface DiskOptions {
  /** A raw disk image. */
  path: string;
  readOnly?: boolean;
}

export interface BoxOptions {
  /** 1 to 64 letters, digits, '-', '_', '.'. */
  name?: string;
  /** vCPUs, 1 to 32 (default 1). */
  cpus?: number;
  /** Guest memory in MiB, 64 or more (default 512). */
  memoryMib?: number;
  /** An ext4 image booted as the root (never written). */
  rootImage?: string;
  /** A kernel of the user's (with `initrd`, whose /init must be the boxlite agent). */
  kernel?: string;
  initrd?: string;
  /** Raw disk images, attached after the root image (16 at most). */
  disks?: DiskOptions[];
  /** Environment of every command run in the box. */
  env?: Record<string, string>;
  /** Working directory of commands that name none. */
  workingDir?: string;
  /** Whether the box outlives the runtime that starts it. */
  detach?: boolean;
  /** Whether the box is removed when it stops. */
  autoRemove?: boolean;
  /** How long the guest may take to become ready (0: the default, 30 s). */
  readyTimeoutMs?: number;
}

export interface BoxEntry {
  id: string;
  name: string | null;
  state: BoxState;
}

export interface ExitStatus {
  /** The exit code, or -1 when a signal killed the command. */
  exitCode: number;
  /** The signal that killed the command, or 0. */
  signal: number;
}

export interface RunResult extends ExitStatus {
  stdout: Buffer;
  stderr: Buffer;
}

export interface RuntimeRunResult extends RunResult {
  /** Whether the command's timeout killed it. */
  timedOut: boolean;
}

export interface ExecOptions {
  /** Variables added to the box's environment. */
  env?: Record<string, string>;
  /** Working directory (default: the box's, else '/'). */
  cwd?: string;
  /** User id to run as (default: the agent's, root). */
  uid?: number;
  /** Group id to run as (default: the agent's). */
  gid?: number;
  /** Wall-clock limit after which the agent kills the command (0: none). */
  timeoutMs?: number;
  /** Whether `execution.stdin` is a Writable (else the command's stdin is /dev/null). */
  stdin?: boolean;
  /**
   * Aborting kills the command (SIGKILL) and makes wait() reject with an AbortError; aborting
   * while exec() is under way makes it reject with an AbortError (killing the box's VMM when
   * that exec is the one booting the box).
   */
  signal?: AbortSignal;
}

/** The runtime of a home folder. */
export declare class Runtime {
  private constructor();
  /** Opens the runtime of a home folder and recovers its boxes. */
  static open(options?: RuntimeOptions): Promise<Runtime>;
  /** Creates a box (state 'configured') without starting it. */
  create(options?: BoxOptions): Promise<Box>;
  /** The box of that exact name, exact id or unique id prefix. */
  get(nameOrId: string): Promise<Box>;
  /** Every box of the runtime, oldest first. */
  list(): Promise<BoxEntry[]>;
  /** Removes a box and its folder; an active box needs `force` (which kills it). */
  remove(nameOrId: string, options?: { force?: boolean }): Promise<void>;
  /** Creates a box, runs `argv` in it, stops and removes it; returns what it wrote (up to 64 MiB). */
  run(argv: string[], options?: BoxOptions): Promise<RuntimeRunResult>;
  /** Closes the runtime: its handles become invalid, its non-detached boxes stop. Idempotent. */
  close(): Promise<void>;
}

/** A handle to a box. */
export declare class Box {
  private constructor();
  /** The box's id. */
  readonly id: string;
  /** Boots the box; aborting `signal` kills its VMM and rejects with an AbortError. */
  start(options?: { signal?: AbortSignal }): Promise<void>;
  /** Stops the box cleanly (else terminates its VMM). */
  stop(): Promise<void>;
  /** Kills the box's VMM at once. */
  kill(): Promise<void>;
  /** The box's current state. */
  state(): Promise<BoxState>;
  /** Everything known about the box (id, name, state, options, dir, ...). */
  info(): Promise<Record<string, unknown> & { id: string; name: string | null; state: BoxState }>;
  /** The box's resource use (cpu_percent, rss_bytes, start timings; null when unknown). */
  metrics(): Promise<Record<string, unknown>>;
  /** Runs a command in the box (booting it first when it is not running). */
  exec(cmd: string, args?: string[], options?: ExecOptions): Promise<Execution>;
  exec(cmd: string, options?: ExecOptions): Promise<Execution>;
  /** Runs a command to its end and captures its output. */
  run(cmd: string, args?: string[], options?: Omit<ExecOptions, 'stdin'>): Promise<RunResult>;
  run(cmd: string, options?: Omit<ExecOptions, 'stdin'>): Promise<RunResult>;
  /** Frees the handle (the box stays). Idempotent. */
  close(): void;
}

/** A command running in a box. */
export declare class Execution {
  private constructor();
  readonly stdout: Readable;
  readonly stderr: Readable;
  /** Present only when started with `stdin: true`; `end()` closes the command's stdin. */
  readonly stdin: Writable | null;
  /**
   * How the command ended, once its output has been pushed to stdout and stderr (and a
   * flowing stream has emitted 'end'). Rejects with an AbortError when the exec's signal aborted,
   * and with the BoxliteError of a failed output (the box killed or stopped meanwhile, a guest
   * error); the streams then end, emitting 'error' only when something listens for it.
   */
  wait(): Promise<ExitStatus>;
  /**
   * Sends a signal (a name such as 'SIGTERM', or a number; default SIGKILL) to the command.
   * Throws a BoxliteError once the command has ended, or after close().
   */
  kill(signal?: NodeJS.Signals | number): void;
  /** Frees the handle, killing a command still running. Idempotent. */
  close(): void;
}
