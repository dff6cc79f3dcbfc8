// Command hello runs a command in a box and streams its output.
package main

import (
	"context"
	"fmt"
	"io"
	"log"
	"os"

	"boxlite"
)

func main() {
	ctx := context.Background()
	rt, err := boxlite.Open()
	if err != nil {
		log.Fatal(err)
	}
	defer rt.Close()
	box, err := rt.Create(ctx, boxlite.WithAutoRemove(true))
	if err != nil {
		log.Fatal(err)
	}
	defer box.Close()
	defer box.Stop(ctx)
	run, err := box.Exec(ctx, "sh", "-c", "echo hello; uname -s")
	if err != nil {
		log.Fatal(err)
	}
	io.Copy(os.Stdout, run.Stdout)
	status, err := run.Wait()
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println("command:", status)
}
