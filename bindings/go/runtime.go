package boxlite

// #include <stdlib.h>
// #include <boxlite.h>
import "C"

import (
	"context"
	"runtime"
	"unsafe"
)

// Runtime holds the boxes of one home folder. Close it when done: boxes it started that are
// not detached stop then.
type Runtime struct {
	h handle
}

// RuntimeOption configures Open.
type RuntimeOption func(*runtimeConfig)

type runtimeConfig struct {
	home, shim, kernel, initrd string
}

// WithHome opens the runtime of home folder dir (default: $BOXLITE_HOME, else
// $XDG_DATA_HOME/boxlite, else ~/.local/share/boxlite).
func WithHome(dir string) RuntimeOption {
	return func(c *runtimeConfig) { c.home = dir }
}

// WithAssets names the runtime's assets: the boxlite-shim binary, the guest kernel and the
// default initramfs. An empty path is searched for as usual ($BOXLITE_RUNTIME_DIR, boxlite/
// next to the library, <prefix>/lib/boxlite, the build caches).
func WithAssets(shim, kernel, initrd string) RuntimeOption {
	return func(c *runtimeConfig) { c.shim, c.kernel, c.initrd = shim, kernel, initrd }
}

// Open opens a runtime and recovers the state of its boxes.
func Open(opts ...RuntimeOption) (*Runtime, error) {
	if err := checkABI(); err != nil {
		return nil, err
	}
	var cfg runtimeConfig
	for _, o := range opts {
		o(&cfg)
	}
	var cs cstrings
	defer cs.free()
	strs := make([]*C.char, 4)
	for i, s := range []string{cfg.home, cfg.shim, cfg.kernel, cfg.initrd} {
		p, err := cs.optStr("open runtime", s)
		if err != nil {
			return nil, err
		}
		strs[i] = p
	}
	var out C.boxlite_runtime
	var cerr *C.boxlite_error
	st := C.boxlite_runtime_open_with_assets(strs[0], strs[1], strs[2], strs[3], &out, &cerr)
	if err := check("open runtime", st, &cerr); err != nil {
		return nil, err
	}
	rt := &Runtime{}
	rt.h.id.Store(uint64(out))
	runtime.SetFinalizer(rt, (*Runtime).Close)
	return rt, nil
}

// Close closes the runtime: its Box and Execution values stop working, and the boxes it
// started that are not detached stop. Closing twice is a no-op.
func (rt *Runtime) Close() error {
	id := rt.h.take()
	if id == 0 {
		return nil
	}
	runtime.SetFinalizer(rt, nil)
	var cerr *C.boxlite_error
	return check("close runtime", C.boxlite_runtime_close(C.boxlite_runtime(id), &cerr), &cerr)
}

func (rt *Runtime) handle() (C.boxlite_runtime, error) {
	id, err := rt.h.get()
	return C.boxlite_runtime(id), err
}

// Create records a new box (state Configured) without starting it.
func (rt *Runtime) Create(ctx context.Context, opts ...BoxOption) (*Box, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	h, err := rt.handle()
	if err != nil {
		return nil, err
	}
	options, err := buildOptions(opts)
	if err != nil {
		return nil, err
	}
	defer C.boxlite_options_free(options, nil)
	var out C.boxlite_box
	var cerr *C.boxlite_error
	if err := check("create box", C.boxlite_create(h, options, &out, &cerr), &cerr); err != nil {
		return nil, err
	}
	return newBox(rt, out)
}

// Get finds a box by exact name, exact id or unique id prefix.
func (rt *Runtime) Get(nameOrID string) (*Box, error) {
	h, err := rt.handle()
	if err != nil {
		return nil, err
	}
	var cs cstrings
	defer cs.free()
	name, err := cs.str("get box", nameOrID)
	if err != nil {
		return nil, err
	}
	var out C.boxlite_box
	var cerr *C.boxlite_error
	if err := check("get box "+nameOrID, C.boxlite_get(h, name, &out, &cerr), &cerr); err != nil {
		return nil, err
	}
	return newBox(rt, out)
}

// BoxEntry is one box of List.
type BoxEntry struct {
	ID    string
	Name  string
	State State
}

// List returns every box of the runtime, oldest first.
func (rt *Runtime) List() ([]BoxEntry, error) {
	h, err := rt.handle()
	if err != nil {
		return nil, err
	}
	var list *C.boxlite_box_list
	var cerr *C.boxlite_error
	if err := check("list boxes", C.boxlite_list(h, &list, &cerr), &cerr); err != nil {
		return nil, err
	}
	defer C.boxlite_box_list_free(list)
	entries := make([]BoxEntry, 0, int(list.len))
	if list.len > 0 {
		for _, e := range unsafe.Slice(list.items, int(list.len)) {
			entry := BoxEntry{ID: C.GoString(e.id), State: State(e.state)}
			if e.name != nil {
				entry.Name = C.GoString(e.name)
			}
			entries = append(entries, entry)
		}
	}
	return entries, nil
}

// Remove removes a box and its folder. An active box is refused (ErrInvalidState) unless
// force, which kills it first.
func (rt *Runtime) Remove(nameOrID string, force bool) error {
	h, err := rt.handle()
	if err != nil {
		return err
	}
	var cs cstrings
	defer cs.free()
	name, err := cs.str("remove box", nameOrID)
	if err != nil {
		return err
	}
	var cerr *C.boxlite_error
	return check("remove box "+nameOrID, C.boxlite_remove(h, name, C.bool(force), &cerr), &cerr)
}
