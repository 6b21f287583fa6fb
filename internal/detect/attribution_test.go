package detect

import (
	"fmt"
	"math"
	"net/netip"
	"testing"
)

func addrs(t *testing.T, spec map[string]int) []netip.Addr {
	t.Helper()
	var out []netip.Addr
	for s, n := range spec {
		a, err := netip.ParseAddr(s)
		if err != nil {
			t.Fatal(err)
		}
		for i := 0; i < n; i++ {
			out = append(out, a)
		}
	}
	return out
}

func TestAttribute(t *testing.T) {
	tests := []struct {
		name       string
		in         map[string]int
		extra      []netip.Addr
		k          int
		wantTotal  int
		wantIPs    []string // "ip prefix count"
		wantPrefix []string // "prefix count"
		skipped    int
	}{
		{
			name: "one subnet dominates",
			in:   map[string]int{"10.0.3.7": 50, "10.0.3.8": 30, "10.0.3.9": 10, "192.168.1.1": 10},
			k:    2, wantTotal: 100,
			wantIPs:    []string{"10.0.3.7 10.0.3.0/24 50", "10.0.3.8 10.0.3.0/24 30"},
			wantPrefix: []string{"10.0.3.0/24 90", "192.168.1.0/24 10"},
		},
		{
			name: "IPv6 /64 and v4-mapped addresses",
			in:   map[string]int{"2001:db8:1:2::10": 3, "2001:db8:1:2:ffff::1": 2, "::ffff:10.1.1.1": 4, "10.1.1.2": 1},
			k:    5, wantTotal: 10,
			wantIPs:    []string{"10.1.1.1 10.1.1.0/24 4", "2001:db8:1:2::10 2001:db8:1:2::/64 3", "2001:db8:1:2:ffff::1 2001:db8:1:2::/64 2", "10.1.1.2 10.1.1.0/24 1"},
			wantPrefix: []string{"10.1.1.0/24 5", "2001:db8:1:2::/64 5"},
		},
		{
			name: "ties sorted by address, default k",
			in:   map[string]int{"10.0.0.9": 1, "10.0.0.1": 1, "10.0.1.1": 1, "10.0.2.1": 1, "10.0.3.1": 1, "10.0.4.1": 1},
			k:    0, wantTotal: 6,
			wantIPs:    []string{"10.0.0.1 10.0.0.0/24 1", "10.0.0.9 10.0.0.0/24 1", "10.0.1.1 10.0.1.0/24 1", "10.0.2.1 10.0.2.0/24 1", "10.0.3.1 10.0.3.0/24 1"},
			wantPrefix: []string{"10.0.0.0/24 2", "10.0.1.0/24 1", "10.0.2.0/24 1", "10.0.3.0/24 1", "10.0.4.0/24 1"},
		},
		{name: "empty", k: 3},
		{name: "invalid skipped", extra: []netip.Addr{{}, {}}, in: map[string]int{"10.0.0.1": 1}, k: 3, wantTotal: 1,
			wantIPs: []string{"10.0.0.1 10.0.0.0/24 1"}, wantPrefix: []string{"10.0.0.0/24 1"}, skipped: 2},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			in := append(addrs(t, tc.in), tc.extra...)
			a := Attribute(in, tc.k)
			if a.Total != tc.wantTotal || a.Skipped != tc.skipped {
				t.Fatalf("total %d skipped %d, want %d %d", a.Total, a.Skipped, tc.wantTotal, tc.skipped)
			}
			var gotIPs, gotP []string
			var sum float64
			for _, s := range a.TopIPs {
				gotIPs = append(gotIPs, fmt.Sprintf("%s %s %d", s.IP, s.Prefix, s.Count))
				if want := float64(s.Count) / float64(a.Total); math.Abs(s.Share-want) > 1e-12 {
					t.Errorf("share of %s = %v, want %v", s.IP, s.Share, want)
				}
			}
			for _, s := range a.TopPrefixes {
				gotP = append(gotP, fmt.Sprintf("%s %d", s.Prefix, s.Count))
				sum += s.Share
			}
			if fmt.Sprint(gotIPs) != fmt.Sprint(tc.wantIPs) {
				t.Errorf("top IPs %q, want %q", gotIPs, tc.wantIPs)
			}
			if fmt.Sprint(gotP) != fmt.Sprint(tc.wantPrefix) {
				t.Errorf("top prefixes %q, want %q", gotP, tc.wantPrefix)
			}
			if sum > 1+1e-9 {
				t.Errorf("prefix shares sum to %v > 1", sum)
			}
		})
	}
}

func BenchmarkAttribute(b *testing.B) {
	in := make([]netip.Addr, 10000)
	for i := range in {
		in[i] = netip.AddrFrom4([4]byte{10, byte(i % 7), byte(i % 251), byte(i % 13)})
	}
	for b.Loop() {
		Attribute(in, 5)
	}
}
