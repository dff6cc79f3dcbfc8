package boxlite

// #include <stdlib.h>
// #include <boxlite.h>
import "C"

import (
	"context"
	"fmt"
	"io"
	"os"
	"runtime"
	"sync"
	"syscall"
	"time"
)

// Cmd describes a command to run in a box.
type Cmd struct {
	// Path is the program, looked up in the guest's PATH.
	Path string
	// Args are its arguments (without the program).
	Args []string
	// Env holds KEY=VALUE strings added to the box's environment.
	Env []string
	// Dir is the working directory ("" for the box's).
	Dir string
	// Credential runs the command as another user and group (nil: the agent's, root);
	// supplementary groups are not supported.
	Credential *syscall.Credential
	// Timeout makes the agent kill the command after this long (0: none).
	Timeout time.Duration
	// Stdin gives the Execution a Stdin to write; without it the command's stdin is /dev/null.
	Stdin bool
	// Stdout, when set, receives the command's stdout as it comes (Execution.Stdout is then
	// nil), as with os/exec; a write error drops the rest and is returned by Wait.
	Stdout io.Writer
	// Stderr is the same for stderr.
	Stderr io.Writer
}

// ExitStatus is how a command ended.
type ExitStatus struct {
	// Code is the exit code, or -1 when a signal killed the command.
	Code int
	// Signal is the signal that killed it, or 0.
	Signal syscall.Signal
}

// Success reports whether the command exited with code 0.
func (s ExitStatus) Success() bool { return s.Code == 0 && s.Signal == 0 }

func (s ExitStatus) String() string {
	if s.Signal != 0 {
		return "signal: " + s.Signal.String()
	}
	return fmt.Sprintf("exit status %d", s.Code)
}

// Execution is a command running in a box. Read Stdout and Stderr, or give Cmd writers for
// them (a stream nobody reads keeps up to 1 MiB, then holds the command back, as with an OS
// pipe), then Wait. Close frees it, killing the command if it still runs.
type Execution struct {
	// Stdin is the command's stdin (nil unless Cmd.Stdin); Close it to send end-of-file.
	Stdin io.WriteCloser
	// Stdout is the command's stdout (nil when Cmd.Stdout was given); io.EOF once the
	// command ended.
	Stdout io.Reader
	// Stderr is the command's stderr (nil when Cmd.Stderr was given).
	Stderr io.Reader

	h      handle
	box    *Box     // keeps the box (and its runtime) reachable while the command runs
	file   *os.File // our duplicate of the execution's descriptor, on Go's poller
	stdout output
	stderr output
	done   chan struct{} // closed when the output has ended
	ctxErr error         // set before done closes when the context killed the command

	waitOnce sync.Once
	status   ExitStatus
	waitErr  error
}

// Exec runs name with args in the box, with Stdin, Stdout and Stderr connected (close Stdin
// when the command reads its stdin to the end); the box is started first if it is not
// running. Cancelling ctx kills the command (and the box's VMM if this call was still booting
// it).
func (b *Box) Exec(ctx context.Context, name string, args ...string) (*Execution, error) {
	return b.ExecCmd(ctx, Cmd{Path: name, Args: args, Stdin: true})
}

// ExecCmd runs cmd in the box, like Exec.
func (b *Box) ExecCmd(ctx context.Context, cmd Cmd) (*Execution, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	h, err := b.handle()
	if err != nil {
		return nil, err
	}
	var cs cstrings
	defer cs.free()
	opts, err := execOptions(&cs, cmd)
	if err != nil {
		return nil, err
	}
	// Only a call that boots the box is aborted by killing it; a running box is left alone.
	booting := true
	if state, err := b.State(); err == nil && state == StateRunning {
		booting = false
	}
	cancelled := watch(ctx, func() {
		if booting {
			C.boxlite_box_kill(h, nil)
		}
	})
	var out C.boxlite_exec
	var cerr *C.boxlite_error
	err = check("exec in box "+b.id, C.boxlite_box_exec(h, opts, &out, &cerr), &cerr)
	runtime.KeepAlive(b) // not finalized (its handle freed) during a boot
	if cancelled() {
		if err == nil {
			C.boxlite_exec_free(out, nil)
		}
		return nil, ctx.Err()
	}
	if err != nil {
		return nil, err
	}
	e, err := newExecution(b, out, cmd)
	if err != nil {
		return nil, err
	}
	go e.pump(ctx)
	return e, nil
}

// execOptions fills the C options of cmd (its strings live in cs).
func execOptions(cs *cstrings, cmd Cmd) (*C.boxlite_exec_options, error) {
	argv, err := cs.array("exec argv", append([]string{cmd.Path}, cmd.Args...))
	if err != nil {
		return nil, err
	}
	env, err := cs.array("exec env", cmd.Env)
	if err != nil {
		return nil, err
	}
	cwd, err := cs.optStr("exec dir", cmd.Dir)
	if err != nil {
		return nil, err
	}
	opts := &C.boxlite_exec_options{
		struct_size: C.size_t(C.sizeof_boxlite_exec_options),
		argv:        argv,
		argc:        C.size_t(1 + len(cmd.Args)),
		env:         env,
		envc:        C.size_t(len(cmd.Env)),
		cwd:         cwd,
		uid:         -1,
		gid:         -1,
		stdin:       C.bool(cmd.Stdin),
	}
	if c := cmd.Credential; c != nil {
		opts.uid, opts.gid = C.int64_t(c.Uid), C.int64_t(c.Gid)
	}
	if cmd.Timeout > 0 {
		opts.timeout_ms = C.uint64_t((cmd.Timeout + time.Millisecond - 1) / time.Millisecond)
	}
	return opts, nil
}

func newExecution(b *Box, h C.boxlite_exec, cmd Cmd) (*Execution, error) {
	var fd C.int32_t
	var cerr *C.boxlite_error
	if err := check("exec descriptor", C.boxlite_exec_fd(h, &fd, &cerr), &cerr); err != nil {
		C.boxlite_exec_free(h, nil)
		return nil, err
	}
	// Our own duplicate: Go's poller owns and closes it; the library's stays the library's.
	dup, _, errno := syscall.Syscall(syscall.SYS_FCNTL, uintptr(fd), syscall.F_DUPFD_CLOEXEC, 0)
	if errno != 0 {
		C.boxlite_exec_free(h, nil)
		return nil, &Error{Op: "exec descriptor", Status: StatusIO, Message: errno.Error()}
	}
	e := &Execution{
		box:  b,
		file: os.NewFile(dup, "boxlite-exec"),
		done: make(chan struct{}),
	}
	e.stdout, e.Stdout = outputTo(cmd.Stdout)
	e.stderr, e.Stderr = outputTo(cmd.Stderr)
	e.h.id.Store(uint64(h))
	if cmd.Stdin {
		e.Stdin = &stdinWriter{e: e}
	}
	runtime.SetFinalizer(e, (*Execution).Close)
	return e, nil
}

// pump moves the output into the pipes until it ends, waiting on the descriptor through Go's
// poller (no thread blocks, nothing spins).
func (e *Execution) pump(ctx context.Context) {
	cancelled := watch(ctx, func() { e.Kill(syscall.SIGKILL) })
	err := e.copyOutput()
	if cancelled() {
		e.ctxErr = ctx.Err()
	}
	if err == nil {
		err = io.EOF
	}
	e.stdout.end(err)
	e.stderr.end(err)
	close(e.done)
}

func (e *Execution) copyOutput() error {
	raw, err := e.file.SyscallConn()
	if err != nil {
		return err
	}
	buf := make([]byte, 64<<10)
	for {
		id, err := e.h.get()
		if err != nil {
			return err
		}
		var stream C.boxlite_stream
		var n C.size_t
		var st C.boxlite_status
		var cerr *C.boxlite_error
		waitErr := raw.Read(func(uintptr) bool {
			C.boxlite_error_free(cerr) // a previous try's BOXLITE_TIMEOUT
			cerr = nil
			st = C.boxlite_exec_read(C.boxlite_exec(id), &stream, (*C.uint8_t)(&buf[0]),
				C.size_t(len(buf)), 0, &n, &cerr)
			// Nothing pending (a timeout of a read that does not wait): back to the poller.
			return st != C.BOXLITE_TIMEOUT
		})
		if waitErr != nil {
			C.boxlite_error_free(cerr)
			return ErrClosed
		}
		if err := check("read the output", st, &cerr); err != nil {
			return err
		}
		switch stream {
		case C.BOXLITE_STREAM_NONE:
			return nil
		case C.BOXLITE_STREAM_STDOUT:
			e.stdout.write(buf[:n])
		case C.BOXLITE_STREAM_STDERR:
			e.stderr.write(buf[:n])
		}
	}
}

// Wait waits for the command to end, once its output has been read (or dropped by Close),
// and returns how it ended. A command killed because Exec's context ended returns that
// context's error with its status; a failed Cmd.Stdout or Cmd.Stderr write is returned too.
func (e *Execution) Wait() (ExitStatus, error) {
	e.waitOnce.Do(func() {
		<-e.done
		e.status, e.waitErr = e.exitStatus()
		for _, out := range []output{e.stdout, e.stderr} {
			if err := out.failure(); err != nil && e.waitErr == nil {
				e.waitErr = err
			}
		}
		if e.ctxErr != nil {
			e.waitErr = &Error{Op: "wait", Status: StatusGuestError,
				Message: "the command was killed: " + e.ctxErr.Error(), cause: e.ctxErr}
		}
	})
	return e.status, e.waitErr
}

func (e *Execution) exitStatus() (ExitStatus, error) {
	id, err := e.h.get()
	if err != nil {
		return ExitStatus{}, err
	}
	var code, sig C.int32_t
	var cerr *C.boxlite_error
	// The output has ended, so the status is known: no waiting.
	st := C.boxlite_exec_wait(C.boxlite_exec(id), 0, &code, &sig, &cerr)
	if err := check("wait", st, &cerr); err != nil {
		return ExitStatus{}, err
	}
	return ExitStatus{Code: int(code), Signal: syscall.Signal(sig)}, nil
}

// Kill sends sig to the command's process group.
func (e *Execution) Kill(sig syscall.Signal) error {
	id, err := e.h.get()
	if err != nil {
		return err
	}
	var cerr *C.boxlite_error
	return check("kill the command", C.boxlite_exec_kill(C.boxlite_exec(id), C.int32_t(sig), &cerr), &cerr)
}

// Close frees the execution, killing the command if it still runs; output not yet read is
// dropped. Closing twice is a no-op.
func (e *Execution) Close() error {
	id := e.h.take()
	if id == 0 {
		return nil
	}
	runtime.SetFinalizer(e, nil)
	var cerr *C.boxlite_error
	err := check("free the execution", C.boxlite_exec_free(C.boxlite_exec(id), &cerr), &cerr)
	e.stdout.close()
	e.stderr.close()
	e.file.Close()
	return err
}

// stdinWriter writes the command's stdin. Write blocks while the guest holds a megabyte the
// command has not read.
type stdinWriter struct {
	e      *Execution
	mu     sync.Mutex
	closed bool
}

func (w *stdinWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	closed := w.closed
	w.mu.Unlock()
	if closed {
		return 0, os.ErrClosed
	}
	if len(p) == 0 {
		return 0, nil
	}
	id, err := w.e.h.get()
	if err != nil {
		return 0, err
	}
	var cerr *C.boxlite_error
	st := C.boxlite_exec_write_stdin(C.boxlite_exec(id), (*C.uint8_t)(&p[0]), C.size_t(len(p)), &cerr)
	if err := check("write stdin", st, &cerr); err != nil {
		return 0, err
	}
	return len(p), nil
}

// Close sends end-of-file once what was written is delivered.
func (w *stdinWriter) Close() error {
	w.mu.Lock()
	closed := w.closed
	w.closed = true
	w.mu.Unlock()
	if closed {
		return nil
	}
	id, err := w.e.h.get()
	if err != nil {
		return err
	}
	var cerr *C.boxlite_error
	return check("close stdin", C.boxlite_exec_close_stdin(C.boxlite_exec(id), &cerr), &cerr)
}
