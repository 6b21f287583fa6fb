package sample

import (
	"context"
	"testing"
	"time"
)

// BenchmarkSamplerOnce is the sampler's own work for one calm sample at a
// 10 ms interval, sources aside: three prompt sources read every sample
// and three slow ones carried (what a calm sample at 10 ms does). Its
// allocs/op is the sampler's per-sample garbage:
//
//	go test -run '^$' -bench SamplerOnce -benchmem ./internal/sample/
func BenchmarkSamplerOnce(b *testing.B) {
	fill := func(s *Sample) { s.Listen = &Listen{Sockets: 1} }
	slow := func(name string) *slowSource {
		return &slowSource{fakeSource: fakeSource{name: name}, period: time.Hour}
	}
	sm := &Sampler{Target: "t:1", Port: 1, Interval: 10 * time.Millisecond,
		Sources: []Source{
			&promptSource{fakeSource{name: "listenq", fill: fill}},
			&promptSource{fakeSource{name: "ebpf"}},
			&promptSource{fakeSource{name: "tcp"}},
			slow("valkey"), slow("conntrack"), slow("nic"),
		}}
	ctx := context.Background()
	sm.Once(ctx) // reads the slow sources once; later samples carry them
	b.ReportAllocs()
	for b.Loop() {
		sm.Once(ctx)
	}
}
