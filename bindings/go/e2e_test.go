package boxlite

// Tests against a real box. They need a host that boots Linux guests (the harness tier runs
// them in its test host, whose /dev/kvm is real KVM) and run only with BOXLITE_E2E=1; the
// runtime's home and assets come from $BOXLITE_HOME and $BOXLITE_RUNTIME_DIR.

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

var shared struct {
	once sync.Once
	rt   *Runtime
	box  *Box
	err  error
}

func TestMain(m *testing.M) {
	code := m.Run()
	if shared.box != nil {
		if err := shared.box.Stop(context.Background()); err != nil {
			fmt.Fprintln(os.Stderr, "stopping the shared box:", err)
			code = 1
		}
		shared.rt.Remove(shared.box.ID(), true)
		shared.box.Close()
		shared.rt.Close()
	}
	os.Exit(code)
}

// e2eBox returns the one running box the real-box tests share (booted by the first of them).
func e2eBox(t *testing.T) *Box {
	t.Helper()
	if os.Getenv("BOXLITE_E2E") != "1" {
		t.Skip("needs a host that boots Linux guests: set BOXLITE_E2E=1 (the harness tier does)")
	}
	shared.once.Do(func() {
		shared.rt, shared.err = Open()
		if shared.err != nil {
			return
		}
		shared.box, shared.err = shared.rt.Create(context.Background(), WithName("go-e2e"))
		if shared.err == nil {
			shared.err = shared.box.Start(context.Background())
		}
	})
	if shared.err != nil {
		t.Fatalf("the shared box: %v", shared.err)
	}
	return shared.box
}

func testCtx(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	t.Cleanup(cancel)
	return ctx
}

// readBoth reads stdout and stderr of e at once (either may hold the command back).
func readBoth(t *testing.T, e *Execution) (string, string) {
	t.Helper()
	var out, errOut bytes.Buffer
	var wg sync.WaitGroup
	wg.Add(2)
	go func() { defer wg.Done(); io.Copy(&out, e.Stdout) }()
	go func() { defer wg.Done(); io.Copy(&errOut, e.Stderr) }()
	wg.Wait()
	return out.String(), errOut.String()
}

func TestE2EStreamsAndExitCode(t *testing.T) {
	box := e2eBox(t)
	e, err := box.Exec(testCtx(t), "sh", "-c", "echo out; echo err >&2; exit 3")
	if err != nil {
		t.Fatal(err)
	}
	defer e.Close()
	e.Stdin.Close()
	out, errOut := readBoth(t, e)
	status, err := e.Wait()
	if err != nil {
		t.Fatal(err)
	}
	if out != "out\n" || errOut != "err\n" || status != (ExitStatus{Code: 3}) {
		t.Errorf("stdout %q, stderr %q, %v; want out, err, exit status 3", out, errOut, status)
	}
}

func TestE2EStreamsBeforeTheEnd(t *testing.T) {
	box := e2eBox(t)
	e, err := box.ExecCmd(testCtx(t), Cmd{Path: "sh", Args: []string{"-c", "echo first; sleep 30"}})
	if err != nil {
		t.Fatal(err)
	}
	defer e.Close()
	line := make([]byte, 6)
	if _, err := io.ReadFull(e.Stdout, line); err != nil || string(line) != "first\n" {
		t.Fatalf("first line %q, %v (must arrive while the command still runs)", line, err)
	}
	if err := e.Kill(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	io.Copy(io.Discard, e.Stdout)
	if status, err := e.Wait(); err != nil || status.Signal != syscall.SIGKILL {
		t.Errorf("after SIGKILL: %v, %v", status, err)
	}
}

func TestE2EOutputIntoWriters(t *testing.T) {
	box := e2eBox(t)
	var out, errOut bytes.Buffer
	e, err := box.ExecCmd(testCtx(t), Cmd{Path: "sh", Args: []string{"-c", "echo a; echo b >&2"},
		Stdout: &out, Stderr: &errOut})
	if err != nil {
		t.Fatal(err)
	}
	defer e.Close()
	if e.Stdout != nil || e.Stderr != nil {
		t.Error("an Execution with writers also has readers")
	}
	status, err := e.Wait()
	if err != nil || !status.Success() || out.String() != "a\n" || errOut.String() != "b\n" {
		t.Errorf("%v, %v: stdout %q, stderr %q", status, err, out.String(), errOut.String())
	}
	// Output nobody wants: Wait alone must not hang, however much there is.
	e, err = box.ExecCmd(testCtx(t), Cmd{Path: "seq", Args: []string{"1", "500000"},
		Stdout: io.Discard, Stderr: io.Discard})
	if err != nil {
		t.Fatal(err)
	}
	defer e.Close()
	if status, err := e.Wait(); err != nil || !status.Success() {
		t.Errorf("seq into io.Discard: %v, %v", status, err)
	}
}

func TestE2EStdinThroughCat(t *testing.T) {
	box := e2eBox(t)
	e, err := box.Exec(testCtx(t), "cat")
	if err != nil {
		t.Fatal(err)
	}
	defer e.Close()
	chunks := []string{"one\n", strings.Repeat("x", 300000), "\nthree\n"}
	go func() {
		for _, c := range chunks {
			if _, err := io.WriteString(e.Stdin, c); err != nil {
				t.Errorf("write stdin: %v", err)
			}
		}
		e.Stdin.Close()
	}()
	out, _ := readBoth(t, e)
	status, err := e.Wait()
	if err != nil || !status.Success() || out != strings.Join(chunks, "") {
		t.Errorf("cat gave %d bytes (want %d), %v, %v", len(out), len(strings.Join(chunks, "")), status, err)
	}
}

func TestE2EExitStatuses(t *testing.T) {
	box := e2eBox(t)
	for cmd, want := range map[string]ExitStatus{
		"true":       {Code: 0},
		"exit 42":    {Code: 42},
		"kill -9 $$": {Code: -1, Signal: syscall.SIGKILL},
	} {
		res, err := box.Run(testCtx(t), "sh", "-c", cmd)
		if err != nil || res.ExitStatus != want {
			t.Errorf("%q: %+v, %v; want %v", cmd, res, err, want)
		}
	}
	// A missing program is the agent's 127, as a shell reports it, with a note on stderr.
	res, err := box.Run(testCtx(t), "no-such-program")
	if err != nil || res.Code != 127 || !strings.Contains(string(res.Stderr), "no-such-program") {
		t.Errorf("a missing program: %+v, %v; want exit status 127 naming it", res, err)
	}
}

func TestE2ELargeOutputIsComplete(t *testing.T) {
	box := e2eBox(t)
	res, err := box.Run(testCtx(t), "seq", "1", "200000")
	if err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(strings.TrimSuffix(string(res.Stdout), "\n"), "\n")
	if len(res.Stdout) != 1288895 || len(lines) != 200000 || lines[199999] != "200000" {
		t.Errorf("seq gave %d bytes, %d lines; want 1288895 bytes, 200000 lines", len(res.Stdout), len(lines))
	}
}

func TestE2EContextCancellationKillsTheCommand(t *testing.T) {
	box := e2eBox(t)
	ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancel()
	begin := time.Now()
	e, err := box.ExecCmd(ctx, Cmd{Path: "sleep", Args: []string{"30"}})
	if err != nil {
		t.Fatal(err)
	}
	defer e.Close()
	io.Copy(io.Discard, e.Stdout)
	status, err := e.Wait()
	if !errors.Is(err, context.DeadlineExceeded) || status.Signal != syscall.SIGKILL {
		t.Errorf("Wait = %v, %v; want SIGKILL and context.DeadlineExceeded", status, err)
	}
	if took := time.Since(begin); took > 20*time.Second {
		t.Errorf("the cancelled sleep 30 took %v", took)
	}
}

func TestE2EKillWithSIGTERM(t *testing.T) {
	box := e2eBox(t)
	e, err := box.ExecCmd(testCtx(t), Cmd{Path: "sleep", Args: []string{"30"}})
	if err != nil {
		t.Fatal(err)
	}
	defer e.Close()
	if err := e.Kill(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	io.Copy(io.Discard, e.Stdout)
	if status, err := e.Wait(); err != nil || status.Signal != syscall.SIGTERM {
		t.Errorf("Wait = %v, %v; want SIGTERM", status, err)
	}
}

func TestE2EEightConcurrentExecs(t *testing.T) {
	box := e2eBox(t)
	var wg sync.WaitGroup
	for i := 0; i < 8; i++ {
		i := i
		wg.Add(1)
		go func() {
			defer wg.Done()
			res, err := box.RunCmd(testCtx(t), Cmd{Path: "sh", Args: []string{"-c", `echo "$N"; exit "$N"`},
				Env: []string{fmt.Sprintf("N=%d", i)}})
			if err != nil || string(res.Stdout) != fmt.Sprintf("%d\n", i) || res.Code != i {
				t.Errorf("exec %d: %+v, %v", i, res, err)
			}
		}()
	}
	wg.Wait()
}

func TestE2EInfoAndMetricsOfARunningBox(t *testing.T) {
	box := e2eBox(t)
	info, err := box.Info()
	if err != nil || info.State != StateRunning || info.PID == nil {
		t.Fatalf("Info = %+v, %v", info, err)
	}
	m, err := box.Metrics()
	if err != nil || m.RSSBytes == nil || *m.RSSBytes == 0 || m.Start == nil || m.Start.ReadyMs <= 0 {
		t.Errorf("Metrics = %+v, %v", m, err)
	}
}

func TestE2ECancelledStartLeavesNoRunningBox(t *testing.T) {
	e2eBox(t) // the runtime's assets are there
	box, err := shared.rt.Create(context.Background(), WithName("go-e2e-cancel"), WithMemoryMiB(256))
	if err != nil {
		t.Fatal(err)
	}
	defer shared.rt.Remove(box.ID(), true)
	defer box.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
	defer cancel()
	err = box.Start(ctx)
	if !errors.Is(err, context.DeadlineExceeded) || !errors.Is(err, ErrStartFailed) {
		t.Fatalf("Start = %v, want a cancelled start (ErrStartFailed, context.DeadlineExceeded)", err)
	}
	if state, err := box.State(); err != nil || state == StateRunning || state == StateStarting {
		t.Errorf("after a cancelled start the box is %v (%v)", state, err)
	}
	if info, _ := box.Info(); info != nil && info.PID != nil {
		t.Errorf("after a cancelled start a VMM runs: pid %d", *info.PID)
	}
}
