package sample

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"
)

type fakeSource struct {
	name  string
	delay time.Duration
	block chan struct{} // when set, Collect waits for it (ignoring ctx)
	err   error
	fill  func(*Sample)
}

func (f *fakeSource) Name() string { return f.name }
func (f *fakeSource) Collect(ctx context.Context, s *Sample) error {
	if f.block != nil {
		<-f.block
	}
	if f.delay > 0 {
		time.Sleep(f.delay)
	}
	if f.fill != nil {
		f.fill(s)
	}
	return f.err
}

func TestSamplerDeadlineAndStale(t *testing.T) {
	stuck := make(chan struct{})
	defer close(stuck)
	sm := &Sampler{
		Target: "t:1", Port: 1, Interval: 100 * time.Millisecond, Deadline: 50 * time.Millisecond,
		Sources: []Source{
			&fakeSource{name: "tcp", fill: func(s *Sample) { s.TCP = &TCP{ListenOverflows: U64(7)} }},
			&fakeSource{name: "valkey", block: stuck, fill: func(s *Sample) { s.Valkey = &Valkey{ConnectedClients: U64(1)} }},
			&fakeSource{name: "conntrack", err: errors.New("unavailable: module not loaded")},
		},
	}
	start := time.Now()
	s := sm.Once(context.Background())
	if took := time.Since(start); took > time.Second {
		t.Fatalf("a stuck source delayed the sample by %s", took)
	}
	if s.TCP == nil || *s.TCP.ListenOverflows != 7 {
		t.Errorf("fast source's part missing: %+v", s.TCP)
	}
	if s.Valkey != nil {
		t.Errorf("a source that missed its deadline must leave its part nil")
	}
	if !strings.HasPrefix(s.Errors["valkey"], "timeout") {
		t.Errorf("errors.valkey = %q, want a timeout", s.Errors["valkey"])
	}
	if s.Errors["conntrack"] != "unavailable: module not loaded" {
		t.Errorf("errors.conntrack = %q", s.Errors["conntrack"])
	}
	if _, ok := s.Errors["tcp"]; ok {
		t.Errorf("tcp answered but has an error")
	}
	// The stuck source is not started again: no goroutine pile-up.
	s2 := sm.Once(context.Background())
	if !strings.HasPrefix(s2.Errors["valkey"], "stale") {
		t.Errorf("second sample errors.valkey = %q, want stale", s2.Errors["valkey"])
	}
	if s2.IntervalMS <= 0 {
		t.Errorf("second sample has no interval")
	}
}

func TestSamplerRunPublishesEveryInterval(t *testing.T) {
	sm := &Sampler{Target: "t:1", Interval: 20 * time.Millisecond,
		Sources: []Source{&fakeSource{name: "slow", delay: time.Second}}}
	ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancel()
	var n int
	sm.Run(ctx, func(*Sample) { n++ })
	// A source slower than the interval never stops samples from coming.
	if n < 5 {
		t.Fatalf("%d samples in 300ms at 20ms with a 1s source", n)
	}
}
