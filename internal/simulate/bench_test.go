package simulate

import (
	"context"
	"testing"
	"time"
)

// BenchmarkSimulate100k measures one 100,000-client kill storm per
// strategy on one core (go test -bench Simulate100k -cpu 1). The issue's
// target is < 30 s per run. Period 1s: 100,000 clients PINGing every
// 100ms would be 1M commands/s, more than one Valkey serves.
func BenchmarkSimulate100k(b *testing.B) {
	for _, st := range []string{"immediate", "glide", "full-jitter", "stormguard"} {
		b.Run(st, func(b *testing.B) {
			f := Fleet{Clients: 100_000, Strategy: st, Scenario: "kill", Observe: true, Period: time.Second}
			var r *Result
			for b.Loop() {
				var err error
				if r, err = Run(context.Background(), DefaultModel(), f); err != nil {
					b.Fatal(err)
				}
			}
			b.ReportMetric(float64(r.Events), "events/op")
			b.ReportMetric(float64(r.ListenOverflows), "overflows")
			if r.TimeToRecoverMS != nil {
				b.ReportMetric(float64(*r.TimeToRecoverMS), "ttr_ms")
			}
		})
	}
}

func BenchmarkSimulate1500(b *testing.B) {
	m := DefaultModel()
	m.ClientDialRate = 8000
	f := Fleet{Clients: 1500, Strategy: "immediate", Scenario: "kill"}
	for b.Loop() {
		if _, err := Run(context.Background(), m, f); err != nil {
			b.Fatal(err)
		}
	}
}
