package main

import (
	"bytes"
	"context"
	"strings"
	"testing"
	"time"

	"github.com/stormguard/stormguard/internal/sandbox/sandboxtest"
)

func TestProgressLine(t *testing.T) {
	var buf sandboxtest.Buffer
	p := newProgress(&buf, "stormguard check", true)
	p.Step("counting over the 1s window")
	// The ticker redraws with the elapsed time; wait for a redraw.
	deadline := time.Now().Add(10 * time.Second)
	for strings.Count(buf.String(), "\r") < 2 && time.Now().Before(deadline) {
		time.Sleep(20 * time.Millisecond)
	}
	p.Done()
	p.Done() // idempotent
	got := buf.String()
	if strings.Count(got, "\r") < 3 {
		t.Errorf("no redraws and erase: %q", got)
	}
	if !strings.Contains(got, "stormguard check: counting over the 1s window … ") {
		t.Errorf("progress line %q", got)
	}
	if strings.Contains(got, "\n") {
		t.Errorf("progress line wrote a newline: %q", got)
	}
	if !strings.HasSuffix(got, "\r\033[K") {
		t.Errorf("line not erased at the end: %q", got)
	}
}

func TestProgressDisabled(t *testing.T) {
	var buf sandboxtest.Buffer
	p := newProgress(&buf, "x", false)
	p.Step("a")
	p.Done()
	if buf.String() != "" {
		t.Errorf("disabled progress wrote %q", buf.String())
	}
}

// TestCheckNoProgressInPipes: with stderr not a terminal (a buffer here, a
// pipe in scripts), check writes nothing to stderr.
func TestCheckNoProgressInPipes(t *testing.T) {
	var out, errb bytes.Buffer
	o := checkOpts{format: "json", failOn: "critical", role: "server", noDiscover: true, window: 200 * time.Millisecond, timeout: time.Second}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	err := runCheck(ctx, &out, &errb, o)
	if c := exitCode(err); c == exitUsage {
		t.Fatalf("check: %v", err)
	}
	if errb.Len() != 0 {
		t.Errorf("check wrote to a non-terminal stderr: %q", errb.String())
	}
	if !strings.HasPrefix(strings.TrimSpace(out.String()), "{") {
		t.Errorf("stdout is not the JSON document: %q", out.String())
	}
}
