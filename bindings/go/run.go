package boxlite

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"sync"
	"syscall"
)

// runLimit bounds what Run keeps of each stream.
const runLimit = 64 << 20

// Result is what Run captured.
type Result struct {
	Stdout []byte
	Stderr []byte
	ExitStatus
}

// Run runs name with args in the box (stdin /dev/null) and returns all its output (up to
// 64 MiB per stream: a command that writes more is killed and Run fails) and how it ended.
func (b *Box) Run(ctx context.Context, name string, args ...string) (*Result, error) {
	return b.RunCmd(ctx, Cmd{Path: name, Args: args})
}

// RunCmd runs cmd like Run (cmd.Stdin, Stdout and Stderr are ignored).
func (b *Box) RunCmd(ctx context.Context, cmd Cmd) (*Result, error) {
	cmd.Stdin, cmd.Stdout, cmd.Stderr = false, nil, nil
	e, err := b.ExecCmd(ctx, cmd)
	if err != nil {
		return nil, err
	}
	defer e.Close()
	var stdout, stderr bytes.Buffer
	var wg sync.WaitGroup
	errs := make([]error, 2)
	for i, s := range []struct {
		dst *bytes.Buffer
		src io.Reader
	}{{&stdout, e.Stdout}, {&stderr, e.Stderr}} {
		i, s := i, s
		wg.Add(1)
		go func() {
			defer wg.Done()
			n, err := io.Copy(s.dst, io.LimitReader(s.src, runLimit+1))
			if err == nil && n > runLimit {
				err = fmt.Errorf("boxlite: the command wrote more than %d MiB to one stream", runLimit>>20)
				e.Kill(syscall.SIGKILL)
				io.Copy(io.Discard, s.src)
			}
			errs[i] = err
		}()
	}
	wg.Wait()
	status, err := e.Wait()
	for _, copyErr := range errs {
		if err == nil {
			err = copyErr
		}
	}
	if err != nil {
		return nil, err
	}
	return &Result{Stdout: stdout.Bytes(), Stderr: stderr.Bytes(), ExitStatus: status}, nil
}
