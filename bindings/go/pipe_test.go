package boxlite

import (
	"bytes"
	"errors"
	"io"
	"testing"
	"time"
)

func TestPipeDeliversInOrderThenTheEnd(t *testing.T) {
	p := newPipe()
	go func() {
		p.write([]byte("hello "))
		p.write([]byte("world"))
		p.end(io.EOF)
	}()
	got, err := io.ReadAll(p)
	if err != nil || string(got) != "hello world" {
		t.Fatalf("ReadAll = %q, %v", got, err)
	}
}

func TestPipeEndsWithTheWritersError(t *testing.T) {
	p := newPipe()
	boom := errors.New("boom")
	p.write([]byte("x"))
	p.end(boom)
	got, err := io.ReadAll(p)
	if string(got) != "x" || !errors.Is(err, boom) {
		t.Fatalf("ReadAll = %q, %v; want the data, then the error", got, err)
	}
}

func TestPipeHoldsTheWriterBackWhenFull(t *testing.T) {
	p := newPipe()
	p.write(make([]byte, pipeLimit))
	wrote := make(chan struct{})
	go func() {
		p.write([]byte("more"))
		close(wrote)
	}()
	select {
	case <-wrote:
		t.Fatal("a write into a full pipe did not wait")
	case <-time.After(50 * time.Millisecond):
	}
	buf := make([]byte, 4096)
	if _, err := p.Read(buf); err != nil {
		t.Fatal(err)
	}
	<-wrote // reading made room: the writer goes on
	p.end(io.EOF)
	rest, _ := io.ReadAll(p)
	if !bytes.HasSuffix(rest, []byte("more")) || len(rest) != pipeLimit-4096+4 {
		t.Errorf("read %d more bytes, want %d ending in 'more'", len(rest), pipeLimit-4096+4)
	}
}

func TestClosedPipeDropsWritesAndFailsReads(t *testing.T) {
	p := newPipe()
	p.write(make([]byte, pipeLimit))
	done := make(chan struct{})
	go func() {
		p.write([]byte("blocked"))
		close(done)
	}()
	p.close()
	<-done // close released the blocked writer
	if _, err := p.Read(make([]byte, 1)); !errors.Is(err, io.ErrClosedPipe) {
		t.Errorf("Read after close = %v", err)
	}
}

type failingWriter struct{ writes int }

func (w *failingWriter) Write(b []byte) (int, error) {
	w.writes++
	return 0, errors.New("disk full")
}

func TestWriterOutputKeepsTheFirstErrorAndDropsTheRest(t *testing.T) {
	w := &failingWriter{}
	out, reader := outputTo(w)
	if reader != nil {
		t.Fatal("a stream into a writer has no reader")
	}
	out.write([]byte("a"))
	out.write([]byte("b"))
	out.end(io.EOF)
	if w.writes != 1 || out.failure() == nil || out.failure().Error() != "disk full" {
		t.Errorf("%d writes, failure %v; want 1 write and the writer's error", w.writes, out.failure())
	}
	if p, r := outputTo(nil); p.failure() != nil || r == nil {
		t.Error("a pipe output has a reader and no failure of its own")
	}
}
