package main

import (
	"errors"
	"fmt"
	"strings"

	"github.com/spf13/cobra"
)

// Exit codes of the contract (docs/contract.md).
const (
	exitOK       = 0
	exitFindings = 1 // a documented finding or condition
	exitUsage    = 2 // usage or connection error
)

// exitError carries an exit code through cobra's RunE.
type exitError struct {
	code   int
	err    error
	silent bool // already reported (e.g. findings printed); print nothing
}

func (e *exitError) Error() string {
	if e.err == nil {
		return ""
	}
	return e.err.Error()
}
func (e *exitError) Unwrap() error { return e.err }

// usageErr marks err as a usage or connection error (exit 2).
func usageErr(err error) error {
	if err == nil {
		return nil
	}
	return &exitError{code: exitUsage, err: err}
}

// findingsErr signals exit 1 without printing anything more.
func findingsErr() error { return &exitError{code: exitFindings, silent: true} }

func exitCode(err error) int {
	if err == nil {
		return exitOK
	}
	var ee *exitError
	if errors.As(err, &ee) {
		return ee.code
	}
	// Cobra's own flag and argument errors, and anything unexpected, are
	// usage errors: the contract reserves 1 for findings.
	return exitUsage
}

func isSilent(err error) bool {
	var ee *exitError
	return errors.As(err, &ee) && ee.silent
}

// oneLine folds a multi-line error into one line for stderr.
func oneLine(s string) string {
	s = strings.TrimSpace(s)
	return strings.Join(strings.Fields(strings.ReplaceAll(s, "\n", " ")), " ")
}

// noArgs rejects positional arguments, as cobra.NoArgs does, but says what
// they are: cobra calls one an "unknown command", which for `stormguard
// sample 127.0.0.1:6379` (the address without --valkey) hides the fix.
func noArgs(cmd *cobra.Command, args []string) error {
	if len(args) == 0 {
		return nil
	}
	return fmt.Errorf("unexpected argument %q: '%s' takes flags only (see '%s --help')", args[0], cmd.CommandPath(), cmd.CommandPath())
}
