package simulate

import (
	"testing"
	"time"
)

// TestNetdevBacklogDropsTickRetransmits: a kill's SYNs dropped at the
// full accept queue within one 32 ms slot of the timer wheel retransmit
// on one tick ~1 s later; on a shared loopback (NetdevBacklog) that
// tick's segments beyond the backlog are lost, and those clients wait
// for the next retransmit and reach the 2 s connect timeout. Without a
// limit (a fleet on many hosts) nothing is dropped there.
func TestNetdevBacklogDropsTickRetransmits(t *testing.T) {
	f := Fleet{Clients: 4000, Strategy: "immediate", Scenario: "kill"}
	m := DefaultModel()
	free := run(t, m, f)
	m.NetdevBacklog = 1000
	capped := run(t, m, f)
	if free.BacklogDrops != 0 {
		t.Errorf("no backlog limit: %d backlog drops, want 0", free.BacklogDrops)
	}
	if capped.BacklogDrops == 0 {
		t.Fatalf("backlog 1000: no backlog drop (overflows %d); want the 1 s wave's SYNs beyond 1,000 dropped", capped.ListenOverflows)
	}
	if capped.ConnectFailures <= free.ConnectFailures {
		t.Errorf("backlog 1000: %d connect failures, without a limit %d; want more (SYNs lost in the backlog reach the connect timeout)",
			capped.ConnectFailures, free.ConnectFailures)
	}
}

// TestSynRetransmitWaitsForClientCPU: on a load generator (the lab) a
// retransmitted SYN's handshake runs on the client side's CPU, as a
// connect()'s does: the lab's kill of 2,000 clients recovered in the
// first 1 s retransmit wave (time to recover 1.02-1.08 s in six runs, no
// connect failure), its PINGs paced behind those handshakes. With the
// 6,000-client calibration of docs/benchmarks.md 11e (Valkey's PING at
// 7 µs as measured) the model's wave gets in whole too.
func TestSynRetransmitWaitsForClientCPU(t *testing.T) {
	m := DefaultModel()
	m.CycleCost, m.ConnCost, m.CmdCost, m.KillCost = 10*time.Microsecond, 7500*time.Nanosecond, 7*time.Microsecond, 8*time.Microsecond
	m.NoticeCost, m.AnswerCost, m.DialCost, m.ClientBurst = 17*time.Microsecond, 5*time.Microsecond, 16*time.Microsecond, 1.23
	m.Somaxconn, m.NetdevBacklog = 128, 1000
	for seed := uint64(1); seed <= 3; seed++ {
		r := run(t, m, Fleet{Clients: 2000, Strategy: "immediate", Scenario: "kill", Period: 3 * time.Second, Seed: seed})
		if r.ListenOverflows == 0 || ttr(r) < time.Second || ttr(r) > 1200*time.Millisecond || r.ConnectFailures != 0 {
			t.Errorf("seed %d: %d overflows, recovered in %v, %d connect failures; want overflows, everyone back in the 1 s wave, no failure",
				seed, r.ListenOverflows, ttr(r), r.ConnectFailures)
		}
	}
}

// TestRefusedDialCost: while a restarting server refuses connects, a
// fleet that redials at once is paced by what a refused dial costs the
// client side (refusedDialShare of an accepted one, measured with the
// lab client's own dial), not by a raw connect()'s 0.13.
func TestRefusedDialCost(t *testing.T) {
	m := DefaultModel()
	m.NoticeCost, m.AnswerCost, m.DialCost, m.ClientBurst = time.Microsecond, time.Microsecond, 16*time.Microsecond, 1
	r := run(t, m, Fleet{Clients: 2000, Strategy: "immediate", Scenario: "restart", Down: time.Second, Period: 3 * time.Second})
	want := float64(time.Second) / (refusedDialShare * float64(m.DialCost))
	if got := float64(r.PeakConnectsPerSec); got < 0.8*want || got > 1.15*want {
		t.Errorf("peak %g connects/s while the server is down, want ~%.0f (one refused dial per %.1f µs of the client side)",
			got, want, refusedDialShare*16)
	}
	if !r.Recovered {
		t.Errorf("not recovered")
	}
}
