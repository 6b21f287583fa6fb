package simulate

import (
	"slices"
	"time"
)

// The host Valkey runs on. In the lab Valkey shares a small machine's
// cores with the load generator — the whole fleet, one process — and
// with whatever else runs there. The generator's CPU grows with the
// fleet: every connected client costs it a PING round trip per Period
// (write, netpoll wake-up, read, timer) and runtime work, and while it
// has queued work (a kill's closes to notice, dials to make) it runs on
// every core it may (GOMAXPROCS: the host's cores). Linux's scheduler
// gives every runnable thread a fair share of the cores; Valkey's event
// loop is one thread, so when the demand
// exceeds the cores its accept turns (and a CLIENT KILL) stretch by
// 1/share. That makes the server's admission capacity fall as the fleet
// grows, as the lab showed: its Valkey answered 2,800–4,400 PINGs/s
// during storms of 10,000–15,000 clients where an idle loop accepts
// ~15,000/s. With HostCores 0 (Valkey's cores are its own, e.g. a fleet
// on other hosts) only the cruder ClientShare applies: a fixed share of
// Valkey's CPU taken while the generator has queued work.

// minShare bounds the slowdown: a runnable thread always gets some CPU.
const minShare = 0.05

// valkeyShare is the fraction of one core Valkey's main thread gets now.
func (s *sim) valkeyShare() float64 {
	if s.m.HostCores == 0 {
		if s.gen.busy {
			return 1 - min(s.m.ClientShare, 1-minShare)
		}
		return 1
	}
	gen := float64(s.live) * s.m.ClientCPU.Seconds() / s.f.Period.Seconds()
	if s.gen.busy {
		// A Go load generator with a backlog (a kill's closes to notice,
		// thousands of goroutines runnable) runs on all its Ps:
		// GOMAXPROCS, the host's cores by default. So while it has
		// work, Valkey's thread shares the cores with that many of its
		// threads, not one: 2/3 of a core on the lab's 2-core host with
		// nothing else running. (Valkey's own CLIENT KILL of
		// 6,000–15,000 idle clients took 7–16 µs each by INFO
		// commandstats at load 1–4 beside a one-thread client side; the
		// lab's Go generator takes more of the machine than that.)
		gen = float64(s.m.HostCores)
	}
	return fairShare(float64(s.m.HostCores), gen, s.m.HostLoad, &s.share)
}

// fairShare is the CPU (in cores) Valkey's one thread gets on a host of
// cores shared with a client side that wants gen cores (at most cores:
// GOMAXPROCS) and other work of load runnable threads: max-min fair
// sharing (water filling) over threads of at most one core each, as
// the scheduler shares cores among runnable threads. buf is scratch,
// kept for the next call.
func fairShare(cores, gen, load float64, buf *[]float64) float64 {
	d := append((*buf)[:0], 1) // Valkey
	defer func() { *buf = d }()
	split := func(x float64) {
		for ; x > 0; x-- {
			d = append(d, min(x, 1))
		}
	}
	split(min(gen, cores))
	split(load)
	var sum float64
	for _, x := range d {
		sum += x
	}
	if sum <= cores {
		return 1
	}
	slices.Sort(d)
	left, n := cores, float64(len(d))
	for _, x := range d {
		if x*n > left { // the rest share what is left equally
			return max(min(left/n, 1), minShare)
		}
		left -= x
		n--
	}
	return 1
}

// stretch is how long work of d on Valkey's main thread takes now.
func (s *sim) stretch(d time.Duration) time.Duration {
	return time.Duration(float64(d) / s.valkeyShare())
}
