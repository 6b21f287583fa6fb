package agent_test

import (
	"context"
	"encoding/json"
	"net"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/stormguard/stormguard/internal/addr"
	"github.com/stormguard/stormguard/internal/agent"
	"github.com/stormguard/stormguard/internal/defuse"
	"github.com/stormguard/stormguard/internal/detect"
	"github.com/stormguard/stormguard/internal/netns"
	"github.com/stormguard/stormguard/internal/sample"
	"github.com/stormguard/stormguard/internal/sandbox"
	"github.com/stormguard/stormguard/internal/sandbox/sandboxtest"
	"github.com/stormguard/stormguard/internal/serve"
)

// flood dials the target from inside the namespace as fast as workers
// allow, closing each connection, until ctx ends. Bounded by ctx and by
// maxDials.
func flood(ctx context.Context, t *testing.T, sb *sandbox.Sandbox, workers int, maxDials int64) *atomic.Int64 {
	t.Helper()
	var n atomic.Int64
	var wg sync.WaitGroup
	for i := 0; i < workers; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for ctx.Err() == nil && n.Add(1) <= maxDials {
				var c net.Conn
				_ = netns.Do(sb.NetNS, func() error {
					d := net.Dialer{Timeout: 300 * time.Millisecond}
					var err error
					c, err = d.DialContext(ctx, "tcp", sb.Addr())
					return err
				})
				if c != nil {
					c.Close()
				}
			}
		}()
	}
	t.Cleanup(wg.Wait)
	return &n
}

// TestIntegrationAutoDefuse: storm → mitigation armed within about one
// detector interval → overflows stop → calm → reverted.
func TestIntegrationAutoDefuse(t *testing.T) {
	sb := sandboxtest.New(t, sandbox.Options{Sysctls: map[string]string{"net.core.somaxconn": "32"}})
	a, _ := addr.Parse(sb.Addr())
	state := filepath.Join(t.TempDir(), "defuse.json")
	const interval = 250 * time.Millisecond
	var mu sync.Mutex
	var stormAt time.Time
	var last *sample.Sample
	var lastState detect.State
	rec, hub := runAgent(t, sb, interval, func(o *agent.Options) {
		o.Detector = detect.Config{StormQuiet: time.Second, CalmQuiet: 2 * time.Second, SurgeQuiet: 2 * time.Second}
		o.AutoDefuse = &agent.AutoDefuse{Actions: []defuse.Action{defuse.RatelimitSYN}, TTL: 30 * time.Second, Rate: defuse.Rate{N: 5, Unit: "second"}, StatePath: state}
		o.OnSample = func(s *sample.Sample, st detect.State) {
			mu.Lock()
			defer mu.Unlock()
			last, lastState = s, st
			if st == detect.Storm && stormAt.IsZero() {
				stormAt = s.Time
			}
		}
	})
	waitSamples(t, rec, 8, 15*time.Second) // baselines primed

	// Storm: Valkey frozen, one source dialling flat out.
	thaw := sandboxtest.Freeze(t, sb)
	fctx, fcancel := context.WithTimeout(context.Background(), 40*time.Second)
	defer fcancel()
	dials := flood(fctx, t, sb, 32, 400000)

	applied := waitEvent(t, hub, "defuse", "applied", 15*time.Second)
	mu.Lock()
	st := stormAt
	mu.Unlock()
	if st.IsZero() {
		t.Fatal("mitigation applied without a storm")
	}
	var at struct{ Time time.Time }
	json.Unmarshal(applied, &at)
	// The outcome: armed during the storm, not after it. Valkey stays
	// frozen until thaw below, so the storm cannot have ended; the lag
	// (about one interval on a quiet machine) is logged, not asserted.
	for _, raw := range hub.Events() {
		var e struct{ Type, From string }
		if json.Unmarshal(raw, &e) == nil && e.Type == "state" && e.From == detect.Storm.String() {
			t.Fatalf("the target left storm before the mitigation was armed: %s", raw)
		}
	}
	t.Logf("armed %s after the storm was detected (interval %s)", at.Time.Sub(st), interval)
	thaw()

	// With the limit armed and Valkey draining, overflows stop while the
	// flood goes on.
	time.Sleep(2 * time.Second)
	o1 := overflows(t, &mu, &last)
	time.Sleep(2 * time.Second)
	o2 := overflows(t, &mu, &last)
	if o2 != o1 {
		t.Errorf("listen overflows still rising under the limit: %d → %d", o1, o2)
	}
	// The limit is what keeps the target calm now: it must stay armed
	// while it is still dropping the flood's SYNs.
	time.Sleep(3 * time.Second)
	for _, raw := range hub.Events() {
		var e struct{ Type, Action string }
		if json.Unmarshal(raw, &e) == nil && e.Type == "defuse" && e.Action == "reverted" {
			t.Fatalf("reverted while the flood was still being dropped: %s", raw)
		}
	}
	// A storm held back by the limit is not over: the agent feeds the
	// rules' drop counter to the detector.
	mu.Lock()
	held, mit := lastState, last.Mitigation
	mu.Unlock()
	if held != detect.Storm || mit == nil || mit.Dropped == nil || *mit.Dropped == 0 {
		t.Errorf("while the limit drops the flood: state %v, sample mitigation %+v; want storm with dropped packets", held, mit)
	}
	m0 := &defuse.Manager{StatePath: state, NetNS: sb.NetNS, Valkey: a}
	if cur, err := m0.List(context.Background()); err != nil || len(cur) != 1 || cur[0].Packets == nil || *cur[0].Packets == 0 {
		t.Fatalf("armed limit while flooding: %+v %v; want one mitigation with dropped packets", cur, err)
	}
	fcancel()
	t.Logf("flood made %d dial attempts", dials.Load())

	waitEvent(t, hub, "defuse", "reverted", 30*time.Second)
	m := &defuse.Manager{StatePath: state, NetNS: sb.NetNS, Valkey: a}
	left, err := m.List(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if len(left) != 0 {
		t.Fatalf("mitigations still listed after calm: %+v", left)
	}
}

func overflows(t *testing.T, mu *sync.Mutex, last **sample.Sample) uint64 {
	t.Helper()
	mu.Lock()
	defer mu.Unlock()
	if *last == nil || (*last).TCP == nil || (*last).TCP.ListenOverflows == nil {
		t.Fatal("no TCP counters in the latest sample")
	}
	return *(*last).TCP.ListenOverflows
}

func waitEvent(t *testing.T, hub *serve.Hub, typ, action string, within time.Duration) json.RawMessage {
	t.Helper()
	deadline := time.Now().Add(within)
	for time.Now().Before(deadline) {
		for _, raw := range hub.Events() {
			var e struct{ Type, Action, Reason string }
			if json.Unmarshal(raw, &e) == nil && e.Type == typ && e.Action == action {
				return raw
			}
			if e.Type == typ && e.Action == "failed" {
				t.Fatalf("defuse failed: %s", raw)
			}
		}
		time.Sleep(50 * time.Millisecond)
	}
	t.Fatalf("no %s/%s event within %s; events: %d", typ, action, within, len(hub.Events()))
	return nil
}

// TestIntegrationAutoDefuseExpiresOutsideCalm: a mitigation the agent
// armed ends at its TTL although the target never became calm: a cap that
// keeps the target out of calm must not prevent its own restore. Valkey
// stays frozen under a flood for the whole test (storm, then recovering:
// CalmQuiet is a minute), auto mode arms `backlog` (sysctls: no Valkey
// connection needed; applying it still waits ~3 s for the frozen Valkey's
// tcp-backlog) with a 10 s TTL and no re-arming (Max = TTL), and the
// detached restore process is killed right after the arming, so only the
// agent can restore it. Then: the agent reports it reverted ("TTL 10s is
// over") while every sample since the arming was outside calm, the
// sysctls are back to their values before, and the state file is empty.
func TestIntegrationAutoDefuseExpiresOutsideCalm(t *testing.T) {
	sb := sandboxtest.New(t, sandbox.Options{Sysctls: map[string]string{"net.core.somaxconn": "32"}})
	before, err := sb.Sysctl("net.core.somaxconn")
	if err != nil {
		t.Fatal(err)
	}
	a, _ := addr.Parse(sb.Addr())
	state := filepath.Join(t.TempDir(), "defuse.json")
	var mu sync.Mutex
	var armedAt time.Time
	var calmAfterArming []time.Time
	var lastState detect.State
	rec, hub := runAgent(t, sb, 250*time.Millisecond, func(o *agent.Options) {
		o.Detector = detect.Config{StormQuiet: 2 * time.Second, SurgeQuiet: 2 * time.Second, CalmQuiet: time.Minute}
		o.AutoDefuse = &agent.AutoDefuse{Actions: []defuse.Action{defuse.Backlog}, TTL: 10 * time.Second, Max: 10 * time.Second, StatePath: state}
		o.OnSample = func(s *sample.Sample, st detect.State) {
			mu.Lock()
			defer mu.Unlock()
			lastState = st
			if !armedAt.IsZero() && st == detect.Calm {
				calmAfterArming = append(calmAfterArming, s.Time)
			}
		}
	})
	waitSamples(t, rec, 8, 15*time.Second) // baselines primed

	// Storm: Valkey frozen, the queue full, a flood that keeps knocking.
	sandboxtest.Freeze(t, sb)
	fctx, fcancel := context.WithTimeout(context.Background(), 40*time.Second)
	defer fcancel()
	flood(fctx, t, sb, 8, 200000)

	applied := waitEvent(t, hub, "defuse", "applied", 20*time.Second)
	var ev struct {
		Time       time.Time
		Mitigation defuse.Mitigation
	}
	if err := json.Unmarshal(applied, &ev); err != nil {
		t.Fatal(err)
	}
	mu.Lock()
	armedAt = ev.Time
	mu.Unlock()
	if ev.Mitigation.Action != defuse.Backlog {
		t.Fatalf("armed %s, want backlog", ev.Mitigation.Action)
	}
	m := &defuse.Manager{StatePath: state, NetNS: sb.NetNS, Valkey: a}
	cur, err := m.List(context.Background())
	if err != nil || len(cur) != 1 {
		t.Fatalf("state after arming (event %s, now %s): %+v %v", applied, time.Now(), cur, err)
	}
	if v, _ := sb.Sysctl("net.core.somaxconn"); v == before {
		t.Fatalf("somaxconn still %s after arming backlog", v)
	}
	// The restore process or timer is the safety net for a crashed agent;
	// here the agent is alive and must restore on its own.
	if pid := cur[0].RestorePID; pid > 0 {
		_ = syscall.Kill(pid, syscall.SIGKILL)
	}

	// In the last second of the TTL auto mode tries to re-arm (the storm
	// goes on, Max is not over); the manager refuses (the sysctls already
	// have the asked values), which must not make the agent forget the
	// applied entry. So "failed" events are expected here.
	var reverted json.RawMessage
	for deadline := time.Now().Add(20 * time.Second); reverted == nil; time.Sleep(50 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("no reverted event within 20 s of the arming; events: %d", len(hub.Events()))
		}
		for _, raw := range hub.Events() {
			var e struct{ Type, Action string }
			if json.Unmarshal(raw, &e) == nil && e.Type == "defuse" && e.Action == "reverted" {
				reverted = raw
			}
		}
	}
	var rev struct {
		Time   time.Time
		Reason string
	}
	if err := json.Unmarshal(reverted, &rev); err != nil {
		t.Fatal(err)
	}
	// "TTL 10s is over", or, when the last-second re-arm won the race
	// and was cut to what Max had left, "TTL 42ms is over": either way a
	// TTL ran out (the wording is chosen by that race, the outcome is not).
	if !strings.HasPrefix(rev.Reason, "TTL ") || !strings.HasSuffix(rev.Reason, " is over") {
		t.Errorf("reverted for %q, want a TTL that ran out", rev.Reason)
	}
	if v, err := sb.Sysctl("net.core.somaxconn"); err != nil || v != before {
		t.Errorf("somaxconn %q after the TTL (%v), want %s", v, err, before)
	}
	if left, err := m.List(context.Background()); err != nil || len(left) != 0 {
		t.Errorf("state after the TTL: %+v %v, want empty", left, err)
	}
	mu.Lock()
	calm, last := calmAfterArming, lastState
	mu.Unlock()
	// The outcome that matters: restored while the target was not calm.
	if len(calm) > 0 && calm[0].Before(rev.Time) {
		t.Errorf("the target was calm at %s, before the revert at %s: the test did not hold it out of calm", calm[0], rev.Time)
	}
	if last == detect.Calm {
		t.Errorf("target calm right after the revert; want storm or recovering")
	}
}

// TestIntegrationAutoDefuseRevertedOnStop: a clean stop (what SIGTERM does
// to watch) takes back what auto mode armed, while the storm is still on:
// a "reverted" event saying why, nothing left in the state file or the
// kernel, and the armed mitigation's restore process gone.
func TestIntegrationAutoDefuseRevertedOnStop(t *testing.T) {
	sb := sandboxtest.New(t, sandbox.Options{Sysctls: map[string]string{"net.core.somaxconn": "32"}})
	a, _ := addr.Parse(sb.Addr())
	state := filepath.Join(t.TempDir(), "defuse.json")
	rec := &watchRec{keep: 10000}
	hub, stop := startAgentInto(t, sb, rec, 250*time.Millisecond, func(o *agent.Options) {
		o.Detector = detect.Config{StormQuiet: time.Second, CalmQuiet: time.Minute, SurgeQuiet: 2 * time.Second}
		o.AutoDefuse = &agent.AutoDefuse{Actions: []defuse.Action{defuse.RatelimitSYN}, TTL: time.Minute, Rate: defuse.Rate{N: 5, Unit: "second"}, StatePath: state}
	})
	t.Cleanup(stop)
	waitSamples(t, rec, 8, 15*time.Second)

	thaw := sandboxtest.Freeze(t, sb)
	fctx, fcancel := context.WithTimeout(context.Background(), 40*time.Second)
	defer fcancel()
	flood(fctx, t, sb, 8, 200000)
	waitEvent(t, hub, "defuse", "applied", 20*time.Second)
	m := &defuse.Manager{StatePath: state, NetNS: sb.NetNS, Valkey: a}
	cur, err := m.List(context.Background())
	if err != nil || len(cur) != 1 {
		t.Fatalf("armed: %+v %v; want one mitigation", cur, err)
	}

	stop() // the storm is still on: only the stop can revert it now
	fcancel()
	thaw()
	var reason string
	for _, raw := range hub.Events() {
		var e struct{ Type, Action, Reason string }
		if json.Unmarshal(raw, &e) == nil && e.Type == "defuse" && e.Action == "reverted" {
			reason = e.Reason
		}
	}
	if reason != "agent stopping" {
		t.Errorf("reverted event reason %q, want \"agent stopping\"", reason)
	}
	if left, err := m.List(context.Background()); err != nil || len(left) != 0 {
		t.Errorf("after the stop: %+v %v, want nothing listed", left, err)
	}
	if out, err := sb.Command(context.Background(), "nft", "list", "table", "inet", defuse.TableName).CombinedOutput(); err == nil {
		t.Errorf("table inet %s still there after the stop:\n%s", defuse.TableName, out)
	}
	if pid := cur[0].RestorePID; pid > 0 {
		// Revert SIGTERMs it; the agent's process reaps it.
		for deadline := time.Now().Add(10 * time.Second); syscall.Kill(pid, 0) == nil; time.Sleep(50 * time.Millisecond) {
			if time.Now().After(deadline) {
				t.Fatalf("restore process %d still running 10 s after the stop", pid)
			}
		}
	}
}
