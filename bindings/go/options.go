package boxlite

// #include <stdlib.h>
// #include <boxlite.h>
import "C"

import (
	"fmt"
	"time"
)

// BoxOption configures Create. The options are checked by the library when the box is
// created; a bad one is an *Error with ErrInvalidArgument.
type BoxOption func(*boxConfig)

type disk struct {
	path     string
	readOnly bool
}

type boxConfig struct {
	name           string
	cpus           uint32
	memoryMiB      uint32
	rootImage      string
	kernel, initrd string
	disks          []disk
	env            [][2]string
	workingDir     string
	detach         bool
	autoRemove     bool
	readyTimeout   time.Duration
}

// WithName names the box (1 to 64 letters, digits, '-', '_', '.').
func WithName(name string) BoxOption { return func(c *boxConfig) { c.name = name } }

// WithCPUs sets the number of vCPUs (1 to 32; default 1).
func WithCPUs(n uint32) BoxOption { return func(c *boxConfig) { c.cpus = n } }

// WithMemoryMiB sets the guest memory in MiB (64 or more; default 512).
func WithMemoryMiB(mib uint32) BoxOption { return func(c *boxConfig) { c.memoryMiB = mib } }

// WithRootImage boots the box on an ext4 image as its root; the image is never written (the
// box runs on a copy-on-write overlay).
func WithRootImage(path string) BoxOption { return func(c *boxConfig) { c.rootImage = path } }

// WithKernel boots the box on a kernel and an initramfs ("" for none) whose /init is the
// boxlite agent.
func WithKernel(kernel, initrd string) BoxOption {
	return func(c *boxConfig) { c.kernel, c.initrd = kernel, initrd }
}

// WithDisk attaches a raw disk image.
func WithDisk(path string, readOnly bool) BoxOption {
	return func(c *boxConfig) { c.disks = append(c.disks, disk{path, readOnly}) }
}

// WithEnv adds a variable to the environment of every command run in the box.
func WithEnv(key, value string) BoxOption {
	return func(c *boxConfig) { c.env = append(c.env, [2]string{key, value}) }
}

// WithWorkingDir sets the working directory of commands that name none.
func WithWorkingDir(dir string) BoxOption { return func(c *boxConfig) { c.workingDir = dir } }

// WithDetach makes the box outlive the runtime (and the process) that starts it.
func WithDetach(detach bool) BoxOption { return func(c *boxConfig) { c.detach = detach } }

// WithAutoRemove removes the box when it stops.
func WithAutoRemove(remove bool) BoxOption { return func(c *boxConfig) { c.autoRemove = remove } }

// WithReadyTimeout sets how long the guest may take to become ready (default 30 s).
func WithReadyTimeout(d time.Duration) BoxOption {
	return func(c *boxConfig) { c.readyTimeout = d }
}

// buildOptions makes the library's options builder from opts; the caller frees it.
func buildOptions(opts []BoxOption) (C.boxlite_options, error) {
	var cfg boxConfig
	for _, o := range opts {
		o(&cfg)
	}
	var options C.boxlite_options
	var cerr *C.boxlite_error
	if err := check("box options", C.boxlite_options_new(&options, &cerr), &cerr); err != nil {
		return 0, err
	}
	if err := applyOptions(options, &cfg); err != nil {
		C.boxlite_options_free(options, nil)
		return 0, err
	}
	return options, nil
}

func applyOptions(o C.boxlite_options, cfg *boxConfig) error {
	var cs cstrings
	defer cs.free()
	var cerr *C.boxlite_error
	var failed error
	// cstr copies a string for the setters ("" is NULL unless required); a string the C side
	// cannot take fails the whole build.
	cstr := func(what, v string, required bool) *C.char {
		var p *C.char
		var err error
		if required {
			p, err = cs.str(what, v)
		} else {
			p, err = cs.optStr(what, v)
		}
		if err != nil && failed == nil {
			failed = err
		}
		return p
	}
	// do runs one setter unless an earlier step failed.
	do := func(what string, call func() C.boxlite_status) {
		if failed == nil {
			cerr = nil
			failed = check(what, call(), &cerr)
		}
	}
	if cfg.name != "" {
		name := cstr("name", cfg.name, true)
		do("set the box name", func() C.boxlite_status {
			return C.boxlite_options_set_name(o, name, &cerr)
		})
	}
	if cfg.cpus != 0 {
		do("set the vCPUs", func() C.boxlite_status {
			return C.boxlite_options_set_cpus(o, C.uint32_t(cfg.cpus), &cerr)
		})
	}
	if cfg.memoryMiB != 0 {
		do("set the memory", func() C.boxlite_status {
			return C.boxlite_options_set_memory_mib(o, C.uint32_t(cfg.memoryMiB), &cerr)
		})
	}
	if cfg.rootImage != "" {
		image := cstr("root image", cfg.rootImage, true)
		do("set the root image", func() C.boxlite_status {
			return C.boxlite_options_set_root_image(o, image, &cerr)
		})
	}
	if cfg.kernel != "" {
		kernel, initrd := cstr("kernel", cfg.kernel, true), cstr("initrd", cfg.initrd, false)
		do("set the kernel", func() C.boxlite_status {
			return C.boxlite_options_set_kernel(o, kernel, initrd, &cerr)
		})
	}
	for _, d := range cfg.disks {
		path, readOnly := cstr("disk", d.path, true), C.bool(d.readOnly)
		do("add disk "+d.path, func() C.boxlite_status {
			return C.boxlite_options_add_disk(o, path, readOnly, &cerr)
		})
	}
	for _, kv := range cfg.env {
		key, value := cstr("env key", kv[0], true), cstr("env value", kv[1], true)
		do("add env "+kv[0], func() C.boxlite_status {
			return C.boxlite_options_add_env(o, key, value, &cerr)
		})
	}
	if cfg.workingDir != "" {
		dir := cstr("working dir", cfg.workingDir, true)
		do("set the working dir", func() C.boxlite_status {
			return C.boxlite_options_set_working_dir(o, dir, &cerr)
		})
	}
	do("set detach", func() C.boxlite_status {
		return C.boxlite_options_set_detach(o, C.bool(cfg.detach), &cerr)
	})
	do("set auto-remove", func() C.boxlite_status {
		return C.boxlite_options_set_auto_remove(o, C.bool(cfg.autoRemove), &cerr)
	})
	if cfg.readyTimeout != 0 {
		ms := cfg.readyTimeout.Milliseconds()
		if ms <= 0 && failed == nil {
			failed = &Error{Op: "set the ready timeout", Status: StatusInvalidArgument,
				Message: fmt.Sprintf("%v is not a positive duration of at least 1 ms", cfg.readyTimeout)}
		}
		do("set the ready timeout", func() C.boxlite_status {
			return C.boxlite_options_set_ready_timeout_ms(o, C.uint64_t(ms), &cerr)
		})
	}
	return failed
}
