//go:build linux

package source

import (
	"context"
	"errors"
	"strings"
	"testing"

	"github.com/mdlayher/netlink"
	"github.com/ti-mo/netfilter"

	"github.com/stormguard/stormguard/internal/sample"
)

func TestConntrackProcRoot(t *testing.T) {
	tests := []struct {
		root                      string
		count                     uint64
		max                       *uint64
		drop, early, insertFailed uint64
	}{
		{"testdata/proc-6.18", 0, sample.U64(262144), 0, 0, 0},
		// No nf_conntrack_max in this namespace and the fixture tree has
		// no global one either: max stays nil, the rest is read.
		{"testdata/proc-6.18-netns-ct", 5, nil, 0, 0, 0},
		{"testdata/proc-4.19-handmade", 262128, sample.U64(262144), 512, 32, 3},
	}
	for _, tt := range tests {
		t.Run(tt.root, func(t *testing.T) {
			src, err := NewConntrack(ConntrackConfig{ProcRoot: tt.root})
			if err != nil {
				t.Fatal(err)
			}
			defer src.Close()
			var s sample.Sample
			if err := src.Collect(context.Background(), &s); err != nil {
				t.Fatal(err)
			}
			ct := s.Conntrack
			if ct == nil || ct.Via != ViaProc {
				t.Fatalf("conntrack = %+v, want via proc (fixtures never use netlink)", ct)
			}
			if *ct.Count != tt.count || *ct.Drop != tt.drop || *ct.EarlyDrop != tt.early || *ct.InsertFailed != tt.insertFailed {
				t.Errorf("got count %d drop %d early %d insert_failed %d, want %d %d %d %d",
					*ct.Count, *ct.Drop, *ct.EarlyDrop, *ct.InsertFailed, tt.count, tt.drop, tt.early, tt.insertFailed)
			}
			if (ct.Max == nil) != (tt.max == nil) || (ct.Max != nil && *ct.Max != *tt.max) {
				t.Errorf("max = %v, want %v", ct.Max, tt.max)
			}
		})
	}
}

func TestConntrackNotLoaded(t *testing.T) {
	src, err := NewConntrack(ConntrackConfig{ProcRoot: "testdata/proc-noconntrack"})
	if err != nil {
		t.Fatal(err)
	}
	var s sample.Sample
	err = src.Collect(context.Background(), &s)
	if !errors.Is(err, ErrUnavailable) {
		t.Fatalf("err = %v, want unavailable", err)
	}
	if want := "unavailable: " + reasonNoConntrack; err.Error() != want {
		t.Fatalf("reason = %q, want %q", err, want)
	}
	if s.Conntrack != nil {
		t.Fatal("conntrack part set although unavailable")
	}
}

func TestConntrackConfigErrors(t *testing.T) {
	if _, err := NewConntrack(ConntrackConfig{Via: "ebpf"}); err == nil {
		t.Error("unknown backend accepted")
	}
	if _, err := NewConntrack(ConntrackConfig{Via: ViaNetlink, ProcRoot: "testdata/proc-6.18"}); err == nil {
		t.Error("netlink backend with a fixture proc root accepted")
	}
}

func ctStatsMsg(t *testing.T, cpu uint16, attrs ...netfilter.Attribute) netlink.Message {
	t.Helper()
	m, err := netfilter.MarshalNetlink(netfilter.Header{SubsystemID: netfilter.NFSubsysCTNetlink, MessageType: ipctnlMsgCtGetStatsCPU, ResourceID: cpu}, attrs)
	if err != nil {
		t.Fatal(err)
	}
	return m
}

func u32(typ uint16, v uint32) netfilter.Attribute {
	return netfilter.Attribute{Type: typ, Data: netfilter.Uint32Bytes(v)}
}

func TestParseCTStatsCPU(t *testing.T) {
	msgs := []netlink.Message{
		ctStatsMsg(t, 0, u32(2, 99), u32(ctaStatsDrop, 4294967295), u32(ctaStatsEarlyDrop, 1), u32(ctaStatsInsertFailed, 2)),
		ctStatsMsg(t, 1, u32(ctaStatsDrop, 1), u32(ctaStatsEarlyDrop, 10), u32(15, 3)),
	}
	ct, err := parseCTStatsCPU(msgs)
	if err != nil {
		t.Fatal(err)
	}
	// Sums are 64-bit: two CPUs can exceed a per-CPU uint32.
	if *ct.Drop != 4294967296 || *ct.EarlyDrop != 11 || *ct.InsertFailed != 2 || ct.Via != ViaNetlink {
		t.Fatalf("got drop %d early %d failed %d via %s", *ct.Drop, *ct.EarlyDrop, *ct.InsertFailed, ct.Via)
	}
	if _, err := parseCTStatsCPU(nil); err == nil {
		t.Error("empty reply accepted")
	}
	bad := []netlink.Message{ctStatsMsg(t, 0, netfilter.Attribute{Type: ctaStatsDrop, Data: []byte{1, 2}})}
	if _, err := parseCTStatsCPU(bad); err == nil || !strings.Contains(err.Error(), "has 2 bytes, want 4") {
		t.Errorf("short attribute: err = %v", err)
	}
}
