package boxlite

// #include <stdlib.h>
// #include <boxlite.h>
import "C"

import (
	"context"
	"encoding/json"
	"runtime"
)

// State is the state of a box.
type State int32

// The states of a box (enum boxlite_box_state).
const (
	StateConfigured State = C.BOXLITE_BOX_CONFIGURED
	StateStarting   State = C.BOXLITE_BOX_STARTING
	StateRunning    State = C.BOXLITE_BOX_RUNNING
	StateStopping   State = C.BOXLITE_BOX_STOPPING
	StateStopped    State = C.BOXLITE_BOX_STOPPED
	StateFailed     State = C.BOXLITE_BOX_FAILED
)

var stateNames = map[State]string{
	StateConfigured: "configured", StateStarting: "starting", StateRunning: "running",
	StateStopping: "stopping", StateStopped: "stopped", StateFailed: "failed",
}

// String is the state's name as the CLI and the box's info print it, e.g. "running".
func (s State) String() string {
	if name, ok := stateNames[s]; ok {
		return name
	}
	return "unknown"
}

// UnmarshalText reads a state's name (the form of Info's JSON).
func (s *State) UnmarshalText(text []byte) error {
	for state, name := range stateNames {
		if name == string(text) {
			*s = state
			return nil
		}
	}
	return &Error{Op: "read a box state", Status: StatusInvalidArgument,
		Message: "unknown state " + string(text)}
}

// Box is one virtual machine of a Runtime. Close frees the handle; the box itself stays until
// Runtime.Remove.
type Box struct {
	h  handle
	id string
	// rt keeps the runtime reachable while the box is: its finalizer would close the
	// runtime, and with it this box's handle.
	rt *Runtime
}

func newBox(rt *Runtime, h C.boxlite_box) (*Box, error) {
	var cid *C.char
	var cerr *C.boxlite_error
	if err := check("box id", C.boxlite_box_id(h, &cid, &cerr), &cerr); err != nil {
		C.boxlite_box_free(h, nil)
		return nil, err
	}
	b := &Box{id: C.GoString(cid), rt: rt}
	C.boxlite_string_free(cid)
	b.h.id.Store(uint64(h))
	runtime.SetFinalizer(b, (*Box).Close)
	return b, nil
}

func (b *Box) handle() (C.boxlite_box, error) {
	id, err := b.h.get()
	return C.boxlite_box(id), err
}

// ID is the box's id (hex).
func (b *Box) ID() string { return b.id }

// Close frees the handle (the box keeps running). Closing twice is a no-op.
func (b *Box) Close() error {
	id := b.h.take()
	if id == 0 {
		return nil
	}
	runtime.SetFinalizer(b, nil)
	var cerr *C.boxlite_error
	return check("free box "+b.id, C.boxlite_box_free(C.boxlite_box(id), &cerr), &cerr)
}

// State is the box's current state.
func (b *Box) State() (State, error) {
	h, err := b.handle()
	if err != nil {
		return 0, err
	}
	var out C.boxlite_box_state
	var cerr *C.boxlite_error
	err = check("state of box "+b.id, C.boxlite_box_get_state(h, &out, &cerr), &cerr)
	return State(out), err
}

// Info is everything known about a box.
type Info struct {
	ID            string  `json:"id"`
	Name          *string `json:"name"`
	State         State   `json:"state"`
	CreatedUnixMs uint64  `json:"created_unix_ms"`
	// PID is the VMM's process id while one runs.
	PID *uint32 `json:"pid"`
	// Reason says why the box failed or stopped abnormally.
	Reason *string `json:"reason"`
	// Exit is how the box's last VMM ended (the shim's exit record).
	Exit json.RawMessage `json:"exit"`
	// Options are the box's options, with the environment's values hidden.
	Options json.RawMessage `json:"options"`
	// Dir is the box's folder.
	Dir string `json:"dir"`
}

// Info returns everything known about the box.
func (b *Box) Info() (*Info, error) {
	var info Info
	if err := b.jsonCall("info of box", func(h C.boxlite_box, out **C.char, e **C.boxlite_error) C.boxlite_status {
		return C.boxlite_box_info_json(h, out, e)
	}, &info); err != nil {
		return nil, err
	}
	return &info, nil
}

// StartTimings are the stages of the box's last start, in milliseconds.
type StartTimings struct {
	LayoutMs  float64 `json:"layout_ms"`
	SpawnMs   float64 `json:"spawn_ms"`
	ReadyMs   float64 `json:"ready_ms"`
	ConnectMs float64 `json:"connect_ms"`
}

// Metrics is the resource use of a running box's VMM; nil fields are unknown.
type Metrics struct {
	// CPUPercent is the average CPU use since the VMM started, in percent of one core.
	CPUPercent *float64 `json:"cpu_percent"`
	// RSSBytes is the VMM's resident memory (guest memory it touched included).
	RSSBytes *uint64 `json:"rss_bytes"`
	// Start is the last start's stage timings.
	Start *StartTimings `json:"start"`
}

// Metrics returns the box's resource use.
func (b *Box) Metrics() (*Metrics, error) {
	var m Metrics
	if err := b.jsonCall("metrics of box", func(h C.boxlite_box, out **C.char, e **C.boxlite_error) C.boxlite_status {
		return C.boxlite_box_metrics_json(h, out, e)
	}, &m); err != nil {
		return nil, err
	}
	return &m, nil
}

// jsonCall runs a call that returns a JSON string and decodes it into v.
func (b *Box) jsonCall(op string, call func(C.boxlite_box, **C.char, **C.boxlite_error) C.boxlite_status, v any) error {
	h, err := b.handle()
	if err != nil {
		return err
	}
	var out *C.char
	var cerr *C.boxlite_error
	if err := check(op+" "+b.id, call(h, &out, &cerr), &cerr); err != nil {
		return err
	}
	defer C.boxlite_string_free(out)
	return json.Unmarshal([]byte(C.GoString(out)), v)
}

// Start boots the box and returns once its guest agent answers (up to the box's ready
// timeout). Cancelling ctx kills the box's VMM and returns ctx's error.
func (b *Box) Start(ctx context.Context) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	h, err := b.handle()
	if err != nil {
		return err
	}
	cancelled := watch(ctx, func() { C.boxlite_box_kill(h, nil) })
	var cerr *C.boxlite_error
	err = check("start box "+b.id, C.boxlite_box_start(h, &cerr), &cerr)
	runtime.KeepAlive(b) // not finalized (its handle freed) during the boot
	if cancelled() {
		// The start may have finished just before the kill landed: kill again, so a cancelled
		// start never leaves a running box.
		C.boxlite_box_kill(h, nil)
		return &Error{Op: "start box " + b.id, Status: StatusStartFailed,
			Message: "cancelled: " + ctx.Err().Error(), cause: ctx.Err()}
	}
	return err
}

// Stop shuts the box down (the guest first, then its VMM is terminated, then killed; up to
// about 20 s). Cancelling ctx kills the VMM at once.
func (b *Box) Stop(ctx context.Context) error {
	h, err := b.handle()
	if err != nil {
		return err
	}
	cancelled := watch(ctx, func() { C.boxlite_box_kill(h, nil) })
	var cerr *C.boxlite_error
	err = check("stop box "+b.id, C.boxlite_box_stop(h, &cerr), &cerr)
	runtime.KeepAlive(b)
	if cancelled() {
		return ctx.Err()
	}
	return err
}

// Kill kills the box's VMM at once, without asking the guest.
func (b *Box) Kill() error {
	h, err := b.handle()
	if err != nil {
		return err
	}
	var cerr *C.boxlite_error
	return check("kill box "+b.id, C.boxlite_box_kill(h, &cerr), &cerr)
}
