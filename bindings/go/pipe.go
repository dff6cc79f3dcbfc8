package boxlite

import (
	"bytes"
	"io"
	"sync"
)

// pipeLimit is how much output of one stream waits for its reader before the command is held
// back (as with an OS pipe, a stream nobody reads eventually stops the command).
const pipeLimit = 1 << 20

// output is where the chunks of one stream go: a pipe the user reads, or the user's writer.
type output interface {
	write(b []byte)
	// end marks the end of the stream (io.EOF, or why the output ended).
	end(err error)
	// close drops the rest.
	close()
	// failure is the error that lost output, if any, for Wait.
	failure() error
}

// outputTo is the output of a stream: into w when given, else a pipe (also returned as the
// reader for the Execution).
func outputTo(w io.Writer) (output, io.Reader) {
	if w != nil {
		return &writerOutput{w: w}, nil
	}
	p := newPipe()
	return p, p
}

// writerOutput copies a stream into the user's writer. Only the execution's reader goroutine
// uses it until the output ends; Wait reads err after that.
type writerOutput struct {
	w   io.Writer
	err error
}

func (o *writerOutput) write(b []byte) {
	if o.err == nil {
		_, o.err = o.w.Write(b)
	}
}

func (o *writerOutput) end(error)      {}
func (o *writerOutput) close()         {}
func (o *writerOutput) failure() error { return o.err }

// pipe is a bounded in-memory pipe: the execution's reader goroutine writes chunks of one
// stream, the user reads them.
type pipe struct {
	mu     sync.Mutex
	cond   sync.Cond
	buf    bytes.Buffer
	err    error // io.EOF or why the output ended, once written
	closed bool  // the reader side was closed: writes are dropped
}

func newPipe() *pipe {
	p := &pipe{}
	p.cond.L = &p.mu
	return p
}

// write appends b, waiting while the pipe is full.
func (p *pipe) write(b []byte) {
	p.mu.Lock()
	defer p.mu.Unlock()
	for p.buf.Len() >= pipeLimit && !p.closed {
		p.cond.Wait()
	}
	if !p.closed {
		p.buf.Write(b)
		p.cond.Broadcast()
	}
}

// end makes reads return err (io.EOF for a complete stream) once the buffer is drained.
func (p *pipe) end(err error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.err == nil {
		p.err = err
	}
	p.cond.Broadcast()
}

// close drops what is buffered and what comes; reads return io.ErrClosedPipe.
func (p *pipe) close() {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.closed = true
	p.buf.Reset()
	p.cond.Broadcast()
}

// failure is nil: a reader sees the pipe's error itself.
func (p *pipe) failure() error { return nil }

// Read reads buffered output, waiting for some; io.EOF after the end.
func (p *pipe) Read(b []byte) (int, error) {
	if len(b) == 0 {
		return 0, nil
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	for p.buf.Len() == 0 && p.err == nil && !p.closed {
		p.cond.Wait()
	}
	switch {
	case p.closed:
		return 0, io.ErrClosedPipe
	case p.buf.Len() > 0:
		n, _ := p.buf.Read(b)
		p.cond.Broadcast()
		return n, nil
	default:
		return 0, p.err
	}
}
