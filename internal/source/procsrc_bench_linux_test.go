//go:build linux

package source

import (
	"bytes"
	"context"
	"os"
	"testing"

	"github.com/stormguard/stormguard/internal/sample"
	"github.com/stormguard/stormguard/internal/sandbox"
	"github.com/stormguard/stormguard/internal/sandbox/sandboxtest"
)

// Costs of one collect on this host (stormguard's own namespace).
// go test -run '^$' -bench 'Collect|Parse' -benchmem ./internal/source/

func BenchmarkParseTCPStats(b *testing.B) {
	ns, err := os.ReadFile("testdata/proc-6.18/net/netstat")
	if err != nil {
		b.Fatal(err)
	}
	sn, err := os.ReadFile("testdata/proc-6.18/net/snmp")
	if err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	for b.Loop() {
		if _, err := ParseTCPStats(bytes.NewReader(ns), bytes.NewReader(sn)); err != nil {
			b.Fatal(err)
		}
	}
}

func benchCollect(b *testing.B, src sample.Source) {
	b.Helper()
	var s sample.Sample
	if err := src.Collect(context.Background(), &s); err != nil {
		b.Skipf("%s unavailable here: %v", src.Name(), err)
	}
	b.ReportAllocs()
	for b.Loop() {
		if err := src.Collect(context.Background(), &s); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkTCPStatCollect(b *testing.B) {
	src := NewTCPStat(TCPStatConfig{})
	defer src.Close()
	benchCollect(b, src)
}

// BenchmarkTCPStatCollectNetNS is the namespace path: files opened once
// inside the namespace, then pread from this goroutine.
func BenchmarkTCPStatCollectNetNS(b *testing.B) {
	sb := sandboxtest.New(b, sandbox.Options{NoValkey: true})
	src := NewTCPStat(TCPStatConfig{NetNS: sb.NetNS})
	defer src.Close()
	benchCollect(b, src)
}

func BenchmarkConntrackCollect(b *testing.B) {
	for _, via := range []string{ViaNetlink, ViaProc} {
		b.Run(via, func(b *testing.B) {
			src, err := NewConntrack(ConntrackConfig{Via: via})
			if err != nil {
				b.Fatal(err)
			}
			defer src.Close()
			benchCollect(b, src)
		})
	}
}

func BenchmarkNICCollect(b *testing.B) {
	src := NewNIC(NICConfig{})
	defer src.Close()
	var s sample.Sample
	b.ReportAllocs()
	for b.Loop() {
		// Unavailable on a host without ENA: the cost of finding that
		// out is what is measured then.
		_ = src.Collect(context.Background(), &s)
	}
}
