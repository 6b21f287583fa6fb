package main

import (
	"bytes"
	"context"
	"testing"
	"time"
)

// cliResult is what one in-process run of the CLI produced.
type cliResult struct {
	Stdout string
	// Stderr is what the command wrote to stderr (progress, notes).
	Stderr string
	// Msg is the one-line message main would print on stderr.
	Msg  string
	Code int
	Err  error
	Took time.Duration
}

// hangBound tells a command that fails promptly from one that hangs: the
// failures these tests provoke end within a second on an idle machine,
// while a hang would last until a kernel timeout (an unanswered connect
// retries its SYN for about two minutes). It is generous so that a loaded
// CI machine never fails a test for being slow; it is below execCLI's own
// 30 s bound so that a hang is reported as such.
const hangBound = 20 * time.Second

// execCLI runs the root command in-process, as main does, with a 30 s
// bound.
func execCLI(t *testing.T, args ...string) cliResult {
	t.Helper()
	return execCLIWithin(t, 30*time.Second, args...)
}

// execCLIWithin is execCLI bounded by d: for commands whose work grows
// with the machine's load (a calibration runs hundreds of simulations).
func execCLIWithin(t *testing.T, d time.Duration, args ...string) cliResult {
	t.Helper()
	root := newRootCmd()
	var out, errb bytes.Buffer
	root.SetOut(&out)
	root.SetErr(&errb)
	root.SetArgs(args)
	ctx, cancel := context.WithTimeout(context.Background(), d)
	defer cancel()
	t0 := time.Now()
	err := root.ExecuteContext(ctx)
	r := cliResult{Stdout: out.String(), Stderr: errb.String(), Code: exitCode(err), Err: err, Took: time.Since(t0)}
	if err != nil {
		r.Msg = oneLine(err.Error())
	}
	return r
}
