package main

import (
	"context"
	"encoding/json"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/stormguard/stormguard/internal/addr"
	"github.com/stormguard/stormguard/internal/sandbox"
	"github.com/stormguard/stormguard/internal/sandbox/sandboxtest"
	"github.com/stormguard/stormguard/internal/source"
)

func TestIntegrationSampleValkeyAuth(t *testing.T) {
	sb := sandboxtest.New(t, sandbox.Options{})
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if out, err := sb.Command(ctx, "valkey-cli", "-p", strconv.Itoa(sb.Port), "CONFIG", "SET", "requirepass", "right-pw-1").CombinedOutput(); err != nil {
		t.Fatalf("requirepass: %v %s", err, out)
	}
	target := "127.0.0.1:" + strconv.Itoa(sb.Port)

	t.Run("wrong password", func(t *testing.T) {
		_, msg, code, took := runCLI(t, "sample", "--valkey", "valkey://:wrong-pw-7@"+target, "--netns", sb.NetNS)
		if code != exitUsage || !strings.Contains(msg, "authentication failed") || strings.Contains(msg, "\n") {
			t.Fatalf("exit %d, %q; want exit 2 and one line saying authentication failed", code, msg)
		}
		if strings.Contains(msg, "wrong-pw-7") {
			t.Fatalf("password leaked: %q", msg)
		}
		if took > hangBound {
			t.Fatalf("took %s", took)
		}
	})
	t.Run("no password", func(t *testing.T) {
		_, msg, code, _ := runCLI(t, "sample", "--valkey", target, "--netns", sb.NetNS)
		if code != exitUsage || !strings.Contains(msg, "requires a password") {
			t.Fatalf("exit %d, %q; want exit 2 and 'requires a password'", code, msg)
		}
		// sample exits: the agent's retry schedule is not its business.
		if strings.Contains(msg, "retry") || strings.Contains(msg, "unavailable:") {
			t.Fatalf("%q speaks of retries or unavailability; sample does not retry", msg)
		}
		// check and defuse plan say the same (they once printed Valkey's
		// two-sentence NOAUTH reply without saying where a password goes).
		for _, args := range [][]string{
			{"check", "--valkey", target, "--netns", sb.NetNS, "--window", "100ms"},
			{"defuse", "plan", "--valkey", target, "--netns", sb.NetNS, "--window", "100ms"},
		} {
			_, msg, code, _ := runCLI(t, args...)
			if code != exitUsage || !strings.Contains(msg, "requires a password (give valkey://") || strings.Contains(msg, "\n") {
				t.Errorf("%s: exit %d, %q; want exit 2 and one line saying a password is required and where it goes", args[0], code, msg)
			}
		}
	})
	t.Run("unroutable", func(t *testing.T) {
		// The sandbox has only loopback: no route to 10.0.0.0/8.
		_, msg, code, took := runCLI(t, "sample", "--valkey", "10.200.0.1:6379", "--netns", sb.NetNS)
		if code != exitUsage || !strings.Contains(msg, "network is unreachable") || took > hangBound {
			t.Fatalf("exit %d after %s, %q; want exit 2 naming the unreachable network", code, took, msg)
		}
	})
	t.Run("right password", func(t *testing.T) {
		t.Setenv("VALKEY_PASSWORD", "right-pw-1")
		out, msg, code, _ := runCLI(t, "sample", "--valkey", target, "--netns", sb.NetNS, "--count", "3", "--interval", "100ms", "--json")
		if code != exitOK {
			t.Fatalf("exit %d: %s", code, msg)
		}
		lines := strings.Split(strings.TrimSpace(out), "\n")
		if len(lines) != 3 {
			t.Fatalf("%d lines, want 3:\n%s", len(lines), out)
		}
		for i, l := range lines {
			var s struct {
				Valkey *struct {
					ConnectedClients *uint64  `json:"connected_clients"`
					MaxClients       *uint64  `json:"maxclients"`
					PingMS           *float64 `json:"ping_ms"`
				} `json:"valkey"`
				Errors map[string]string `json:"errors"`
			}
			if err := json.Unmarshal([]byte(l), &s); err != nil {
				t.Fatalf("line %d: %v", i, err)
			}
			if s.Valkey == nil || s.Valkey.ConnectedClients == nil || s.Valkey.MaxClients == nil || s.Valkey.PingMS == nil {
				t.Fatalf("line %d lacks Valkey fields: %s", i, l)
			}
			if _, bad := s.Errors["valkey"]; bad {
				t.Fatalf("line %d: errors.valkey = %q", i, s.Errors["valkey"])
			}
		}
	})
}

// thawOnFirstWrite thaws a frozen Valkey once the first sample is written.
type thawOnFirstWrite struct {
	strings.Builder
	thaw func()
}

func (w *thawOnFirstWrite) Write(p []byte) (int, error) {
	if w.thaw != nil {
		w.thaw()
		w.thaw = nil
	}
	return w.Builder.Write(p)
}

// TestIntegrationSamplePartlyReached: Valkey frozen for the first sample
// only (thawed as that sample is printed, no timing involved): the first
// sample misses Valkey, later ones reach it, and the run is not "cannot
// reach Valkey" (exit 0), since Valkey was reached.
func TestIntegrationSamplePartlyReached(t *testing.T) {
	sb := sandboxtest.New(t, sandbox.Options{})
	a, err := addr.Parse(sb.Addr())
	if err != nil {
		t.Fatal(err)
	}
	out := &thawOnFirstWrite{thaw: sandboxtest.Freeze(t, sb)}
	err = runSample(t.Context(), out, source.Target{Addr: a, NetNS: sb.NetNS}, sampleOpts{count: 20, interval: 200 * time.Millisecond, json: true})
	var first, reached int
	for i, l := range strings.Split(strings.TrimSpace(out.String()), "\n") {
		var s struct {
			Valkey *json.RawMessage  `json:"valkey"`
			Errors map[string]string `json:"errors"`
		}
		if err := json.Unmarshal([]byte(l), &s); err != nil {
			t.Fatalf("line %d: %v", i, err)
		}
		switch {
		case i == 0 && s.Valkey == nil && s.Errors["valkey"] != "":
			first++
		case s.Valkey != nil:
			reached++
		}
	}
	if first != 1 || reached == 0 {
		t.Fatalf("first sample missed Valkey: %v; later samples that reached it: %d (want ≥ 1)\n%s", first == 1, reached, out.String())
	}
	if err != nil {
		t.Fatalf("runSample: %v; want success, Valkey was reached by %d samples", err, reached)
	}
}
