package boxlite

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"
)

// openTemp opens a runtime on a fresh home folder, closed at the end of the test.
func openTemp(t *testing.T, opts ...RuntimeOption) *Runtime {
	t.Helper()
	rt, err := Open(append([]RuntimeOption{WithHome(t.TempDir())}, opts...)...)
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	t.Cleanup(func() { rt.Close() })
	return rt
}

func TestVersionAndABI(t *testing.T) {
	if !regexp.MustCompile(`^\d+\.\d+\.\d+`).MatchString(Version()) {
		t.Fatalf("Version() = %q, not a version", Version())
	}
	if err := checkABI(); err != nil {
		t.Fatal(err)
	}
}

func TestStatusNamesAndSentinels(t *testing.T) {
	if got := StatusNotFound.String(); got != "BOXLITE_NOT_FOUND" {
		t.Errorf("StatusNotFound.String() = %q", got)
	}
	if got := Status(999).String(); got != "BOXLITE_UNKNOWN" {
		t.Errorf("Status(999).String() = %q", got)
	}
	err := error(&Error{Op: "x", Status: StatusTimeout, Message: "m"})
	if !errors.Is(err, ErrTimeout) || errors.Is(err, ErrNotFound) {
		t.Errorf("errors.Is does not follow the status of %v", err)
	}
	if err.Error() != "boxlite: x: m" {
		t.Errorf("Error() = %q", err.Error())
	}
}

func TestUnknownBoxIsNotFound(t *testing.T) {
	rt := openTemp(t)
	_, err := rt.Get("nope")
	var e *Error
	if !errors.Is(err, ErrNotFound) || !errors.As(err, &e) {
		t.Fatalf("Get(nope) = %v, want ErrNotFound as *Error", err)
	}
	if e.Status != StatusNotFound || !strings.Contains(e.Message, "nope") {
		t.Errorf("error %+v does not name the box", e)
	}
	if err := rt.Remove("nope", false); !errors.Is(err, ErrNotFound) {
		t.Errorf("Remove(nope) = %v, want ErrNotFound", err)
	}
}

func TestBadArgumentsAreRefused(t *testing.T) {
	rt := openTemp(t)
	ctx := context.Background()
	cases := map[string][]BoxOption{
		"a name with a space": {WithName("bad name!")},
		"a NUL in the name":   {WithName("a\x00b")},
		"99 vCPUs":            {WithCPUs(99)},
		"1 MiB of memory":     {WithMemoryMiB(1)},
		"a negative timeout":  {WithReadyTimeout(-time.Second)},
		"a NUL in an env key": {WithEnv("K\x00", "v")},
	}
	for what, opts := range cases {
		if _, err := rt.Create(ctx, opts...); !errors.Is(err, ErrInvalidArgument) {
			t.Errorf("%s: Create = %v, want ErrInvalidArgument", what, err)
		}
	}
	if boxes, err := rt.List(); err != nil || len(boxes) != 0 {
		t.Errorf("a refused create left boxes: %v, %v", boxes, err)
	}
}

func TestCreateListInfoGetRemove(t *testing.T) {
	rt := openTemp(t)
	box, err := rt.Create(context.Background(), WithName("go-test"), WithCPUs(2),
		WithMemoryMiB(256), WithEnv("SECRET", "s3cr3t"))
	if err != nil {
		t.Fatal(err)
	}
	defer box.Close()
	if !regexp.MustCompile(`^[0-9a-f]{24}$`).MatchString(box.ID()) {
		t.Errorf("ID() = %q, not 24 hex digits", box.ID())
	}
	boxes, err := rt.List()
	if err != nil || len(boxes) != 1 {
		t.Fatalf("List = %v, %v", boxes, err)
	}
	want := BoxEntry{ID: box.ID(), Name: "go-test", State: StateConfigured}
	if boxes[0] != want {
		t.Errorf("List()[0] = %+v, want %+v", boxes[0], want)
	}
	if state, err := box.State(); err != nil || state != StateConfigured {
		t.Errorf("State = %v, %v", state, err)
	}
	info, err := box.Info()
	if err != nil {
		t.Fatal(err)
	}
	if info.ID != box.ID() || info.Name == nil || *info.Name != "go-test" ||
		info.State != StateConfigured || info.PID != nil || info.Dir == "" {
		t.Errorf("Info = %+v", info)
	}
	if strings.Contains(string(info.Options), "s3cr3t") || !strings.Contains(string(info.Options), "SECRET") {
		t.Errorf("Info.Options shows the env value or loses the key: %s", info.Options)
	}
	if _, err := box.Metrics(); err != nil {
		t.Errorf("Metrics of a configured box: %v", err)
	}
	for _, query := range []string{"go-test", box.ID(), box.ID()[:6]} {
		got, err := rt.Get(query)
		if err != nil || got.ID() != box.ID() {
			t.Errorf("Get(%q) = %v, %v", query, got, err)
		} else {
			got.Close()
		}
	}
	if _, err := rt.Create(context.Background(), WithName("go-test")); !errors.Is(err, ErrAlreadyExists) {
		t.Errorf("a second box named go-test: %v, want ErrAlreadyExists", err)
	}
	if err := rt.Remove("go-test", false); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(info.Dir); !os.IsNotExist(err) {
		t.Errorf("the box folder %s is still there: %v", info.Dir, err)
	}
	if _, err := box.State(); !errors.Is(err, ErrNotFound) {
		t.Errorf("State of a removed box = %v, want ErrNotFound", err)
	}
}

func TestClosedHandles(t *testing.T) {
	rt, err := Open(WithHome(t.TempDir()))
	if err != nil {
		t.Fatal(err)
	}
	box, err := rt.Create(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if err := rt.Close(); err != nil {
		t.Fatal(err)
	}
	if err := rt.Close(); err != nil {
		t.Errorf("a second Close = %v, want nil", err)
	}
	if _, err := rt.List(); !errors.Is(err, ErrClosed) {
		t.Errorf("List on a closed runtime = %v, want ErrClosed", err)
	}
	if _, err := rt.Create(context.Background()); !errors.Is(err, ErrClosed) {
		t.Errorf("Create on a closed runtime = %v, want ErrClosed", err)
	}
	// The box handle died with its runtime; the library says so rather than crash.
	if _, err := box.State(); !errors.Is(err, ErrInvalidHandle) {
		t.Errorf("State after the runtime closed = %v, want ErrInvalidHandle", err)
	}
	if err := box.Close(); !errors.Is(err, ErrInvalidHandle) {
		t.Errorf("Close of a box of a closed runtime = %v, want ErrInvalidHandle", err)
	}
	if _, err := box.State(); !errors.Is(err, ErrClosed) {
		t.Errorf("State of a closed box = %v, want ErrClosed", err)
	}
}

func TestOpenOnARegularFileFails(t *testing.T) {
	file := filepath.Join(t.TempDir(), "file")
	if err := os.WriteFile(file, []byte("x"), 0o644); err != nil {
		t.Fatal(err)
	}
	rt, err := Open(WithHome(file))
	if err == nil {
		rt.Close()
		t.Fatal("Open on a regular file succeeded")
	}
	if !errors.Is(err, ErrIO) || !strings.Contains(err.Error(), file) {
		t.Errorf("Open on a file = %v, want an ErrIO naming %s", err, file)
	}
}

func TestMissingAssetsRefuseTheStart(t *testing.T) {
	dir := t.TempDir()
	rt := openTemp(t, WithAssets(filepath.Join(dir, "no-shim"), filepath.Join(dir, "no-kernel"),
		filepath.Join(dir, "no-initrd")))
	box, err := rt.Create(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	defer box.Close()
	err = box.Start(context.Background())
	if !errors.Is(err, ErrAssetMissing) || !strings.Contains(err.Error(), dir) {
		t.Fatalf("Start without assets = %v, want ErrAssetMissing naming %s", err, dir)
	}
	if _, err := box.Exec(context.Background(), "true"); !errors.Is(err, ErrAssetMissing) {
		t.Errorf("Exec without assets = %v, want ErrAssetMissing", err)
	}
	if state, _ := box.State(); state != StateConfigured {
		t.Errorf("a refused start changed the state to %v", state)
	}
}

func TestCancelledContextsDoNothing(t *testing.T) {
	rt := openTemp(t)
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := rt.Create(ctx); !errors.Is(err, context.Canceled) {
		t.Errorf("Create with a cancelled context = %v", err)
	}
	box, err := rt.Create(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	defer box.Close()
	if err := box.Start(ctx); !errors.Is(err, context.Canceled) {
		t.Errorf("Start with a cancelled context = %v", err)
	}
	if _, err := box.Exec(ctx, "true"); !errors.Is(err, context.Canceled) {
		t.Errorf("Exec with a cancelled context = %v", err)
	}
	if state, _ := box.State(); state != StateConfigured {
		t.Errorf("the state became %v", state)
	}
}

func TestConcurrentUseOfOneRuntime(t *testing.T) {
	rt := openTemp(t)
	var wg sync.WaitGroup
	errs := make(chan error, 16)
	for i := 0; i < 8; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			box, err := rt.Create(context.Background())
			if err != nil {
				errs <- err
				return
			}
			defer box.Close()
			if _, err := rt.List(); err != nil {
				errs <- err
			}
			if err := rt.Remove(box.ID(), false); err != nil {
				errs <- err
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	if boxes, err := rt.List(); err != nil || len(boxes) != 0 {
		t.Errorf("after the goroutines: %v, %v", boxes, err)
	}
}
