package boxlite

import "sync/atomic"

// handle is a C ABI handle that Close zeroes exactly once. The library checks every handle it
// is given (a freed one is BOXLITE_INVALID_HANDLE, never a crash), so a call racing with Close
// is safe: it sees either the live handle or ErrClosed.
type handle struct {
	id atomic.Uint64
}

// get returns the live handle or ErrClosed.
func (h *handle) get() (uint64, error) {
	if id := h.id.Load(); id != 0 {
		return id, nil
	}
	return 0, ErrClosed
}

// take returns the handle and marks it closed; 0 when it already was.
func (h *handle) take() uint64 {
	return h.id.Swap(0)
}
