package simulate

import (
	"testing"
	"time"
)

// TestWheelDelay: a kernel timer never fires early, and fires on its
// wheel level's tick: at HZ 250 a 200 ms data retransmit on a 4 ms
// jiffy, a 1 s SYN retransmit on a 32 ms boundary, so SYNs sent within
// the same 32 ms leave again together.
func TestWheelDelay(t *testing.T) {
	const hz = 250
	jiffy := 4 * time.Millisecond
	for _, c := range []struct {
		d, gran time.Duration
	}{
		{200 * time.Millisecond, jiffy},
		{time.Second, 8 * jiffy},
		{2 * time.Second, 8 * jiffy}, // 500 jiffies: still level 1 (below 504)
		{4 * time.Second, 64 * jiffy},
	} {
		for _, now := range []time.Duration{0, time.Millisecond, 7 * time.Millisecond, 31 * time.Millisecond, 12345 * time.Microsecond} {
			got := wheelDelay(now, 0, c.d, hz)
			fire := now + got
			if got < c.d {
				t.Errorf("timeout %v armed at %v fires after %v: early", c.d, now, got)
			}
			if fire%c.gran != 0 || got > c.d+c.gran+jiffy {
				t.Errorf("timeout %v armed at %v fires at %v: want the next %v boundary after %v", c.d, now, fire, c.gran, now+c.d)
			}
		}
	}
	// Armed anywhere within one 32 ms slot, a 1 s timer fires on one tick.
	a := wheelDelay(64*time.Millisecond+time.Millisecond, 0, time.Second, hz) + 65*time.Millisecond
	b := wheelDelay(64*time.Millisecond+20*time.Millisecond, 0, time.Second, hz) + 84*time.Millisecond
	if a != b {
		t.Errorf("1 s timers armed 19 ms apart in one slot fire at %v and %v, want together", a, b)
	}
	if got := wheelDelay(3*time.Millisecond, 0, time.Second, -1); got != time.Second {
		t.Errorf("HZ -1: %v, want the exact timeout", got)
	}
}

// TestRetransmitsLeaveInBatches: the SYNs a kill's redials lose on the
// full accept queue come back ~1 s later on a few ticks of the wheel,
// and each tick's batch gets past the SYN check together, so its final
// ACKs overflow what room the queue has: with the wheel a kill of 2,000
// overflows more than with exact timeouts, and the retransmits' connects
// land on at most a handful of distinct 32 ms ticks.
func TestRetransmitsLeaveInBatches(t *testing.T) {
	m := DefaultModel()
	f := Fleet{Clients: 2000, Strategy: "immediate", Scenario: "kill", Period: 3 * time.Second}
	wheel := run(t, m, f)
	m.HZ = -1
	exact := run(t, m, f)
	if !wheel.Recovered || !exact.Recovered {
		t.Fatalf("not recovered: wheel %v, exact %v", wheel.Recovered, exact.Recovered)
	}
	if wheel.ListenOverflows <= exact.ListenOverflows {
		t.Errorf("overflows with the wheel %d, exact timeouts %d: want more with the wheel's batches", wheel.ListenOverflows, exact.ListenOverflows)
	}
}

// TestAnswersWaitForTheClientSide: the lab's client side reads a PING's
// answer when its goroutine runs, in line with the closes it has yet to
// notice: with a kill faster than the generator, no client is back
// before the generator has noticed (nearly) every close.
func TestAnswersWaitForTheClientSide(t *testing.T) {
	m := DefaultModel()
	m.KillCost, m.NoticeCost = time.Microsecond, 100*time.Microsecond
	r := run(t, m, Fleet{Clients: 2000, Strategy: "immediate", Scenario: "kill", Period: 3 * time.Second})
	// 2000 notices take 200 ms of the generator; the first answers arrive
	// after a few hundred of them.
	if r.RecoverP50MS == nil || *r.RecoverP50MS < 200 {
		t.Errorf("median recovery %v ms, want after the 200 ms of notices ahead of the answers", r.RecoverP50MS)
	}
}
