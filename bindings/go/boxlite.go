// Package boxlite runs commands in boxes: small KVM virtual machines with a Linux guest,
// through libboxlite.so, the C ABI of the boxlite runtime (found with pkg-config; install it
// with scripts/install.sh).
//
// A Runtime holds the boxes of one home folder; a Box is one virtual machine; an Execution is a
// command running in a box, with its stdin, stdout and stderr as Go streams. Every type is safe
// for concurrent use. Close is the rule for every handle (a finalizer only frees what was
// forgotten). Calls that boot, stop or wait take a context.Context: cancelling it kills the
// execution or aborts the start.
//
//	rt, err := boxlite.Open()
//	box, err := rt.Create(ctx, boxlite.WithName("demo"))
//	res, err := box.Run(ctx, "echo", "hello")
package boxlite

// #cgo pkg-config: boxlite
// #include <stdlib.h>
// #include <boxlite.h>
import "C"

import "fmt"

// abiVersion is the ABI this package was written against (BOXLITE_ABI_VERSION).
const abiVersion = 0

// Version is the version of the loaded libboxlite, e.g. "0.1.0".
func Version() string {
	return C.GoString(C.boxlite_version())
}

// checkABI refuses a library whose ABI differs from the one this package was written for.
func checkABI() error {
	if v := uint32(C.boxlite_abi_version()); v != abiVersion {
		return fmt.Errorf("boxlite: libboxlite implements ABI %d, this package needs ABI %d; "+
			"install the matching library (scripts/install.sh)", v, abiVersion)
	}
	return nil
}
