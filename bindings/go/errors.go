package boxlite

// #include <stdlib.h>
// #include <boxlite.h>
import "C"

import (
	"errors"
	"fmt"
)

// Status is a status code of the C ABI. Each non-OK status is also an error value, so
// errors.Is(err, boxlite.ErrNotFound) tells what a call's *Error was.
type Status int32

// The statuses of the C ABI (enum boxlite_status).
const (
	StatusOK              Status = C.BOXLITE_OK
	StatusInvalidArgument Status = C.BOXLITE_INVALID_ARGUMENT
	StatusNotFound        Status = C.BOXLITE_NOT_FOUND
	StatusAlreadyExists   Status = C.BOXLITE_ALREADY_EXISTS
	StatusInvalidState    Status = C.BOXLITE_INVALID_STATE
	StatusTimeout         Status = C.BOXLITE_TIMEOUT
	StatusGuestError      Status = C.BOXLITE_GUEST_ERROR
	StatusIO              Status = C.BOXLITE_IO
	StatusInternal        Status = C.BOXLITE_INTERNAL
	StatusInvalidHandle   Status = C.BOXLITE_INVALID_HANDLE
	StatusAssetMissing    Status = C.BOXLITE_ASSET_MISSING
	StatusStartFailed     Status = C.BOXLITE_START_FAILED
)

// Sentinels for errors.Is.
var (
	ErrInvalidArgument error = StatusInvalidArgument
	ErrNotFound        error = StatusNotFound
	ErrAlreadyExists   error = StatusAlreadyExists
	ErrInvalidState    error = StatusInvalidState
	ErrTimeout         error = StatusTimeout
	ErrGuest           error = StatusGuestError
	ErrIO              error = StatusIO
	ErrInternal        error = StatusInternal
	ErrInvalidHandle   error = StatusInvalidHandle
	ErrAssetMissing    error = StatusAssetMissing
	ErrStartFailed     error = StatusStartFailed
	// ErrClosed: the Runtime, Box or Execution was closed.
	ErrClosed = errors.New("boxlite: use of a closed handle")
)

// String is the C name of the status, e.g. "BOXLITE_NOT_FOUND".
func (s Status) String() string {
	return C.GoString(C.boxlite_status_name(C.int32_t(s)))
}

// Error makes a Status usable as a sentinel error.
func (s Status) Error() string {
	return "boxlite: " + s.String()
}

// Error is a failed call of the library: what was attempted, the status and the library's
// message (which says what to do about it).
type Error struct {
	// Op is the call that failed, e.g. "start box 1f2e...".
	Op string
	// Status is the C ABI's status code.
	Status Status
	// Message is the library's explanation.
	Message string
	// cause is what made the call fail on the Go side (a context's error), for errors.Is.
	cause error
}

func (e *Error) Error() string {
	return fmt.Sprintf("boxlite: %s: %s", e.Op, e.Message)
}

// Unwrap returns the Go-side cause, e.g. context.Canceled for a cancelled start.
func (e *Error) Unwrap() error {
	return e.cause
}

// Is matches the Status sentinels (ErrNotFound, ...).
func (e *Error) Is(target error) bool {
	s, ok := target.(Status)
	return ok && s == e.Status
}

// check turns a status and the C error the call stored at cerr into a Go error (nil for
// BOXLITE_OK), freeing the C error. It takes the error's address so that it is read after the
// call, whatever order the arguments are evaluated in.
func check(op string, status C.boxlite_status, cerr **C.boxlite_error) error {
	e := *cerr
	*cerr = nil
	defer C.boxlite_error_free(e)
	if status == C.BOXLITE_OK {
		return nil
	}
	msg := Status(status).String()
	if e != nil && e.message != nil {
		msg = C.GoString(e.message)
	}
	return &Error{Op: op, Status: Status(status), Message: msg}
}
