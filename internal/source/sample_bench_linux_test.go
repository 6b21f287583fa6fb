//go:build linux

package source

import (
	"context"
	"testing"
	"time"

	"github.com/stormguard/stormguard/internal/addr"
	"github.com/stormguard/stormguard/internal/sample"
	"github.com/stormguard/stormguard/internal/sandbox"
	"github.com/stormguard/stormguard/internal/sandbox/sandboxtest"
)

// BenchmarkSampleSources is the per-sample cost of every real source of a
// sandboxed Valkey, one sub-benchmark per source plus the whole sample
// (sample.Sampler.Once), as the agent runs them. Profile with
//
//	go test -run '^$' -bench SampleSources -cpuprofile /tmp/cpu.out ./internal/source/
func BenchmarkSampleSources(b *testing.B) {
	sb := sandboxtest.New(b, sandbox.Options{})
	a, err := addr.Parse(sb.Addr())
	if err != nil {
		b.Fatal(err)
	}
	// No poller: its 100 Hz cost is measured on its own
	// (BenchmarkListenqPoller100Hz).
	set := Open(context.Background(), Options{Target: Target{Addr: a, NetNS: sb.NetNS}, ListenPoll: -1, Interval: 100 * time.Millisecond})
	defer set.Close()
	for _, src := range set.Sources {
		b.Run(src.Name(), func(b *testing.B) {
			var s sample.Sample
			b.ReportAllocs()
			for b.Loop() {
				// A source that is unavailable here (no ENA NIC, no
				// conntrack) costs what finding that out costs.
				_ = src.Collect(context.Background(), &s)
			}
		})
	}
	b.Run("sample", func(b *testing.B) {
		sm := &sample.Sampler{Target: sb.Addr(), Port: a.Port, NetNS: sb.NetNS, Sources: set.Sources, Interval: 100 * time.Millisecond}
		b.ReportAllocs()
		for b.Loop() {
			sm.Once(context.Background())
		}
	})
}
