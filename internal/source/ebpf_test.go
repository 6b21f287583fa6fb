package source

import (
	"context"
	"encoding/json"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/stormguard/stormguard/internal/listentrace"
	"github.com/stormguard/stormguard/internal/sample"
)

func TestEBPFTurnedOff(t *testing.T) {
	_, err := openEBPF(context.Background(), Options{NoEBPF: true})
	if !errors.Is(err, ErrUnavailable) || !strings.Contains(err.Error(), "--ebpf=false") {
		t.Fatalf("open with NoEBPF: %v, want unavailable naming the flag", err)
	}
	t.Setenv(listentrace.Env, "0")
	if _, err := openEBPF(context.Background(), Options{}); !errors.Is(err, ErrUnavailable) {
		t.Fatalf("open with %s=0: %v, want unavailable", listentrace.Env, err)
	}
}

func TestFillEBPF(t *testing.T) {
	waits := func(max time.Duration, us ...uint64) listentrace.Counters {
		var c listentrace.Counters
		for _, v := range us {
			c.Hist[bucketFor(v)]++
			c.Accepts++
			c.WaitSumUS += v
		}
		c.MaxWait = max
		return c
	}
	tests := []struct {
		name      string
		cur, d    listentrace.Counters
		elapsed   time.Duration
		wantRate  float64
		wantWait  bool
		wantMaxMS float64
		wantOver  *uint64
	}{
		{name: "idle", elapsed: time.Second, wantRate: 0},
		{name: "one slow accept", cur: waits(500*time.Millisecond, 500000), d: waits(500*time.Millisecond, 500000),
			elapsed: 500 * time.Millisecond, wantWait: true, wantMaxMS: 500},
		{name: "max reset raced", d: waits(0, 2000, 3000), elapsed: time.Second, wantWait: true, wantMaxMS: 3000.0 * 1.0625 / 1000},
		{name: "syns and drops", cur: listentrace.Counters{SYNs: 40, Drops: 7, Listeners: 2}, d: listentrace.Counters{SYNs: 20},
			elapsed: 2 * time.Second, wantRate: 10, wantOver: sample.U64(7)},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			s := &sample.Sample{}
			fillEBPF(s, tc.cur, tc.d, tc.elapsed, nil)
			if s.SynRate == nil || *s.SynRate != tc.wantRate {
				t.Fatalf("syn_rate = %v, want %v", s.SynRate, tc.wantRate)
			}
			if s.AcceptWaitMS == nil {
				t.Fatal("accept_wait_ms is null with eBPF on")
			}
			if got := s.AcceptWaitMS.Max != nil; got != tc.wantWait {
				t.Fatalf("accept wait present = %v, want %v", got, tc.wantWait)
			}
			if tc.wantWait && (*s.AcceptWaitMS.Max < tc.wantMaxMS*0.94 || *s.AcceptWaitMS.Max > tc.wantMaxMS*1.07) {
				t.Fatalf("max = %v ms, want about %v", *s.AcceptWaitMS.Max, tc.wantMaxMS)
			}
			if (s.PortOverflows == nil) != (tc.wantOver == nil) || (s.PortOverflows != nil && *s.PortOverflows != *tc.wantOver) {
				t.Fatalf("overflows = %v, want %v", s.PortOverflows, tc.wantOver)
			}
			// The JSON keys of the contract are there, null or not.
			b, _ := json.Marshal(s)
			for _, k := range []string{`"accept_wait_ms":{"p50":`, `"syn_rate":`} {
				if !strings.Contains(string(b), k) {
					t.Fatalf("JSON %s lacks %s", b, k)
				}
			}
		})
	}
}

// bucketFor finds the histogram bucket of us microseconds.
func bucketFor(us uint64) int {
	for i := 0; i < listentrace.NBuckets; i++ {
		if low, high := listentrace.BucketBounds(i); float64(us) >= low && float64(us) < high {
			return i
		}
	}
	return listentrace.NBuckets - 1
}

// TestSharedRead: a Read taken for the accept-queue counts is used by the
// Collect that follows it in the same sample, once; an older one is not.
func TestSharedRead(t *testing.T) {
	e := &ebpfSource{}
	now := time.Now()
	e.shared, e.sharedAt, e.hasShared = listentrace.Counters{Accepts: 7}, now, true
	if c, at, ok := e.takeShared(now.Add(time.Millisecond)); !ok || c.Accepts != 7 || !at.Equal(now) {
		t.Fatalf("fresh shared read: %+v %v %v, want it", c, at, ok)
	}
	if _, _, ok := e.takeShared(now.Add(time.Millisecond)); ok {
		t.Error("shared read used twice")
	}
	e.shared, e.sharedAt, e.hasShared = listentrace.Counters{Accepts: 8}, now, true
	if _, _, ok := e.takeShared(now.Add(sharedFresh + time.Millisecond)); ok {
		t.Error("a shared read older than sharedFresh was used")
	}
}

// TestTCPSlowOnlyWithPerListenerCount: the tcp source is read every sample
// (SlowPeriod 0) unless eBPF counts the listener's own overflows.
func TestTCPSlowOnlyWithPerListenerCount(t *testing.T) {
	s := NewTCPStat(TCPStatConfig{ProcRoot: "testdata/proc-6.18"})
	if p := s.SlowPeriod(); p != 0 {
		t.Errorf("without eBPF: SlowPeriod %v, want 0", p)
	}
	e := &ebpfSource{}
	srcs := []sample.Source{s, e}
	useOverflowCount(srcs)
	if p := s.SlowPeriod(); p != 0 {
		t.Errorf("eBPF not counting yet: SlowPeriod %v, want 0", p)
	}
	e.counting.Store(true)
	if p := s.SlowPeriod(); p != tcpPeriod {
		t.Errorf("eBPF counting: SlowPeriod %v, want %v", p, tcpPeriod)
	}
	e.counting.Store(false)
	if p := s.SlowPeriod(); p != 0 {
		t.Errorf("eBPF stopped counting: SlowPeriod %v, want 0", p)
	}
}

// TestFillEBPFSharesUnchangedHistogram: a sample whose counters hold no
// new accept shares the previous sample's histogram (read-only); one
// that counted an accept gets a new one with it, and the old one is left
// as it was.
func TestFillEBPFSharesUnchangedHistogram(t *testing.T) {
	var c listentrace.Counters
	c.Hist[bucketFor(100)]++
	c.Accepts, c.WaitSumUS = 1, 100
	s1 := &sample.Sample{}
	h1 := fillEBPF(s1, c, listentrace.Counters{}, time.Second, nil)
	s2 := &sample.Sample{}
	if h2 := fillEBPF(s2, c, listentrace.Counters{}, time.Second, h1); h2 != h1 || s2.AcceptWaitHist != h1 {
		t.Fatal("no new accept: the histogram was not shared")
	}
	c.Hist[bucketFor(5000)]++
	c.Accepts, c.WaitSumUS = 2, 5100
	s3 := &sample.Sample{}
	h3 := fillEBPF(s3, c, listentrace.Counters{}, time.Second, h1)
	if h3 == h1 || h3.Count != 2 || h3.Sum != 5100e-6 {
		t.Fatalf("after an accept: histogram %+v (shared %v), want a new one with 2 waits", h3, h3 == h1)
	}
	if h1.Count != 1 || s1.AcceptWaitHist.Count != 1 {
		t.Fatalf("the earlier sample's histogram changed: %+v", h1)
	}
}
