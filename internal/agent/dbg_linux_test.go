//go:build linux

package agent_test

import (
	"encoding/json"
	"testing"
	"time"

	"github.com/stormguard/stormguard/internal/sandbox"
	"github.com/stormguard/stormguard/internal/sandbox/sandboxtest"
)

func TestDbgStorm(t *testing.T) {
	sb := sandboxtest.New(t, sandbox.Options{Sysctls: map[string]string{"net.core.somaxconn": "16"}})
	rec, hub := runAgent(t, sb, 500*time.Millisecond, nil)
	t0 := time.Now()
	freezeStorm(t, sb, 80, 2*time.Second, 2*time.Second, nil)
	time.Sleep(time.Second)
	for _, s := range rec.samplesSince(t0) {
		b, _ := json.Marshal(s)
		t.Logf("%s", b)
	}
	t.Logf("%v", rec.transitionsSince(time.Time{}))
	b, _ := json.Marshal(hub.Views())
	t.Logf("%s", b)
}
