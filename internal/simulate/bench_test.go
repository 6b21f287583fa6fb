package simulate

import (
	"context"
	"strings"
	"testing"
	"time"
)

// BenchmarkSimulate100k measures one 100,000-client kill storm per
// strategy on one core (go test -bench Simulate100k -cpu 1). The issue's
// target is < 30 s per run. Period 1s: 100,000 clients PINGing every
// 100ms would be 1M commands/s, more than one Valkey serves.
//
// "lab/..." runs the same storms with a model as bench/simulate.sh
// calibrates it on the lab (2026-12-02: a load generator on Valkey's
// 2-core host, its CPU growing with the fleet): the client side's queue
// and the host's fair share add events and work per event.
func BenchmarkSimulate100k(b *testing.B) {
	lab := DefaultModel()
	lab.ConnCost, lab.CmdCost = 29*time.Microsecond, 19*time.Microsecond
	lab.NoticeCost, lab.DialCost, lab.ClientBurst = 33*time.Microsecond, 7*time.Microsecond, 1.44
	lab.HostCores, lab.ClientCPU, lab.HostLoad = 2, 50*time.Microsecond, 0.5
	for _, st := range []string{"immediate", "glide", "full-jitter", "stormguard", "lab/immediate", "lab/stormguard"} {
		m := DefaultModel()
		if strings.HasPrefix(st, "lab/") {
			m = lab
		}
		b.Run(st, func(b *testing.B) {
			f := Fleet{Clients: 100_000, Strategy: strings.TrimPrefix(st, "lab/"), Scenario: "kill", Observe: true, Period: time.Second}
			var r *Result
			for b.Loop() {
				var err error
				if r, err = Run(context.Background(), m, f); err != nil {
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
