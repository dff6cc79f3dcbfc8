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
