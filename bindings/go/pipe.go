package boxlite

import (
	"bytes"
	"io"
	"sync"
)

// pipeLimit is how much output of one stream waits for its reader before the command is held
// back (as with an OS pipe, a stream nobody reads eventually stops the command).
const pipeLimit = 1 << 20

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

// Read reads buffered output, waiting for some; io.EOF after the end.
func (p *pipe) Read(b []byte) (int, error) {
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
