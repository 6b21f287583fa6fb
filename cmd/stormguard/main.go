// Command stormguard detects and defuses TCP connection storms against Valkey.
//
// See `stormguard --help` and docs/ for the commands.
package main

import (
	"context"
	"fmt"
	"os"
	"os/signal"
	"syscall"

	"github.com/stormguard/stormguard/internal/sandbox"
)

func main() {
	hideArgvPasswords()
	// --hosts --rtt without netem relays packets in a child process of
	// this binary.
	sandbox.ServeDelayLine()
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err := newRootCmd().ExecuteContext(ctx)
	stop()
	code := exitCode(err)
	if err != nil && code != 0 && !isSilent(err) {
		fmt.Fprintln(os.Stderr, "stormguard: "+oneLine(err.Error()))
	}
	os.Exit(code)
}
