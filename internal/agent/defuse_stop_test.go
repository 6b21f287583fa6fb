package agent

import (
	"context"
	"log/slog"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stormguard/stormguard/internal/addr"
	"github.com/stormguard/stormguard/internal/defuse"
	"github.com/stormguard/stormguard/internal/detect"
	"github.com/stormguard/stormguard/internal/sandbox/sandboxtest"
	"github.com/stormguard/stormguard/internal/serve"
	"github.com/stormguard/stormguard/internal/source"
)

// TestAutoDefuseNothingStartsAfterStop: once Run has begun stopping, a
// storm sample must not start an arming (it would be applied after the
// stop's revert and left behind). The control case shows the same call
// does start one before the stop: accept-cap against a closed port fails,
// and the failure is an event.
func TestAutoDefuseNothingStartsAfterStop(t *testing.T) {
	a0, err := addr.Parse("127.0.0.1:1")
	if err != nil {
		t.Fatal(err)
	}
	target := source.Target{Addr: a0}
	for _, stopping := range []bool{false, true} {
		var log sandboxtest.Buffer
		ag, err := New(Options{
			Targets:  []source.Target{target},
			Interval: time.Second,
			Hub:      serve.NewHub(nil, 1, 1),
			Logger:   slog.New(slog.NewTextHandler(&log, nil)),
			AutoDefuse: &AutoDefuse{Actions: []defuse.Action{defuse.AcceptCap},
				StatePath: filepath.Join(t.TempDir(), "state.json")},
		})
		if err != nil {
			t.Fatal(err)
		}
		ag.stopping = stopping
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		ag.autoDefuse(ctx, target, &autoState{}, nil, detect.Storm, time.Now())
		ag.defuseWork.Wait()
		cancel()
		started := strings.Contains(log.String(), "agent event")
		if started == stopping {
			t.Errorf("stopping=%v: an arming started=%v, want %v\nlog:\n%s", stopping, started, !stopping, log.String())
		}
	}
}
