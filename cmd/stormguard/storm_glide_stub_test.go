//go:build !(glide && cgo && linux)

package main

import (
	"bytes"
	"slices"
	"strings"
	"testing"

	"github.com/stormguard/stormguard/internal/lab"
)

// TestGlideNotBuiltIn: a binary built without the glide tag refuses the
// strategy with exit 2 and one line saying how to get it, also inside an
// explicit --compare list.
func TestGlideNotBuiltIn(t *testing.T) {
	for _, args := range [][]string{
		{"--spawn", "--clients", "5", "--strategy", "valkey-glide"},
		{"--target", "127.0.0.1:6379", "--netns", "/proc/self/ns/net", "--clients", "5", "--strategy", "valkey-glide"},
		{"--spawn", "--clients", "5", "--compare", "immediate,valkey-glide"},
	} {
		code, msg, out := runStormCLI(t, append([]string{"storm"}, args...)...)
		if code != exitUsage || out != "" {
			t.Errorf("%v: exit %d, stdout %q; want exit %d and nothing", args, code, out, exitUsage)
		}
		if !strings.Contains(msg, "make build-glide") || !strings.Contains(msg, "cgo") || strings.Contains(msg, "\n") {
			t.Errorf("%v: message %q, want one line naming make build-glide and cgo", args, msg)
		}
	}
}

// TestGlideCompareAllWithout: --compare all runs what this binary has and
// says on stderr that valkey-glide is not built in.
func TestGlideCompareAllWithout(t *testing.T) {
	var notice bytes.Buffer
	got, err := stormStrategies(stormOpts{compare: "all", notice: &notice})
	if err != nil {
		t.Fatal(err)
	}
	if slices.Contains(got, lab.GLIDEStrategy) || len(got) != len(lab.Strategies())-1 {
		t.Errorf("--compare all gave %v", got)
	}
	if !strings.Contains(notice.String(), "valkey-glide is not built into this binary") ||
		strings.Count(notice.String(), "\n") != 1 {
		t.Errorf("notice %q, want one line saying valkey-glide is not built in", notice.String())
	}
}
