package boxlite

import "context"

// watch runs onCancel if ctx is done before the returned stop is called. stop reports whether
// onCancel ran (then the caller returns ctx's error).
func watch(ctx context.Context, onCancel func()) (stop func() bool) {
	if ctx.Done() == nil {
		return func() bool { return false }
	}
	finished := make(chan struct{})
	fired := make(chan bool, 1)
	go func() {
		select {
		case <-ctx.Done():
			onCancel()
			fired <- true
		case <-finished:
			fired <- false
		}
	}()
	return func() bool {
		close(finished)
		return <-fired
	}
}
