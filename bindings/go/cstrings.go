package boxlite

// #include <stdlib.h>
import "C"

import (
	"fmt"
	"strings"
	"unsafe"
)

// cstrings holds C copies of Go strings for one call and frees them together. The C ABI reads
// strings only during the call, so they live exactly as long as it.
type cstrings struct {
	allocs []unsafe.Pointer
}

// str copies s to C memory; a NUL inside s is an error (C would silently cut the string).
func (c *cstrings) str(what, s string) (*C.char, error) {
	if strings.IndexByte(s, 0) >= 0 {
		return nil, &Error{Op: what, Status: StatusInvalidArgument,
			Message: fmt.Sprintf("%q holds a NUL byte", s)}
	}
	p := C.CString(s)
	c.allocs = append(c.allocs, unsafe.Pointer(p))
	return p, nil
}

// optStr is str, with "" as NULL (the ABI's "not set").
func (c *cstrings) optStr(what, s string) (*C.char, error) {
	if s == "" {
		return nil, nil
	}
	return c.str(what, s)
}

// array copies list to a C array of C strings (NULL for an empty list). The array itself is in
// C memory: cgo forbids passing C a Go slice that C then keeps pointers into via a struct.
func (c *cstrings) array(what string, list []string) (**C.char, error) {
	if len(list) == 0 {
		return nil, nil
	}
	size := C.size_t(len(list)) * C.size_t(unsafe.Sizeof((*C.char)(nil)))
	mem := C.malloc(size)
	c.allocs = append(c.allocs, mem)
	items := unsafe.Slice((**C.char)(mem), len(list))
	for i, s := range list {
		p, err := c.str(what, s)
		if err != nil {
			return nil, err
		}
		items[i] = p
	}
	return (**C.char)(mem), nil
}

// free releases every copy.
func (c *cstrings) free() {
	for _, p := range c.allocs {
		C.free(p)
	}
	c.allocs = nil
}
