package source

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"reflect"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/stormguard/stormguard/internal/sample"
)

// fakeNIC is a nicBackend backed by `ethtool -S` fixture files.
type fakeNIC struct {
	links   []nicLink
	drivers map[string]string
	files   map[string]string // ifname → fixture
	errs    map[string]error
	closed  bool
}

func (f *fakeNIC) Links() ([]nicLink, error) { return f.links, nil }

func (f *fakeNIC) Driver(name string) (string, error) {
	if d, ok := f.drivers[name]; ok {
		return d, nil
	}
	return "", syscall.ENODEV
}

func (f *fakeNIC) Stats(name string) (map[string]uint64, error) {
	if err := f.errs[name]; err != nil {
		return nil, err
	}
	file, ok := f.files[name]
	if !ok {
		return nil, syscall.ENODEV
	}
	return readEthtoolS(file)
}

func (f *fakeNIC) Close() error { f.closed = true; return nil }

// readEthtoolS parses `ethtool -S` output ("     name: value").
func readEthtoolS(file string) (map[string]uint64, error) {
	fh, err := os.Open(file)
	if err != nil {
		return nil, err
	}
	defer fh.Close()
	m := map[string]uint64{}
	sc := bufio.NewScanner(fh)
	for sc.Scan() {
		k, v, ok := strings.Cut(strings.TrimSpace(sc.Text()), ": ")
		if !ok {
			continue
		}
		n, err := strconv.ParseUint(v, 10, 64)
		if err != nil {
			return nil, fmt.Errorf("%s: %s: %w", file, k, err)
		}
		m[k] = n
	}
	return m, sc.Err()
}

func ethtoolFixture(t *testing.T, name string) map[string]uint64 {
	t.Helper()
	m, err := readEthtoolS("testdata/ethtool/" + name)
	if err != nil {
		t.Fatal(err)
	}
	return m
}

func up(name string, addrs ...string) nicLink {
	l := nicLink{Name: name, Up: true}
	for _, a := range addrs {
		l.Addrs = append(l.Addrs, net.ParseIP(a))
	}
	return l
}

func TestChooseInterfaces(t *testing.T) {
	links := []nicLink{
		{Name: "lo", Up: true, Loopback: true, Addrs: []net.IP{net.ParseIP("127.0.0.1")}},
		up("eth1", "10.0.1.5"),
		up("eth0", "10.0.0.5", "fd00::5"),
		{Name: "eth2", Up: false, Addrs: []net.IP{net.ParseIP("10.0.2.5")}},
	}
	tests := []struct {
		ip   string
		want []string
	}{
		{"10.0.0.5", []string{"eth0"}},
		{"fd00::5", []string{"eth0"}},
		{"10.0.1.5", []string{"eth1"}},
		{"127.0.0.1", []string{"eth0", "eth1"}}, // loopback: every up non-lo
		{"0.0.0.0", []string{"eth0", "eth1"}},   // wildcard
		{"", []string{"eth0", "eth1"}},          // a host name
		{"10.0.2.5", []string{"eth0", "eth1"}},  // owner is down
		{"192.0.2.1", []string{"eth0", "eth1"}}, // not local
	}
	for _, tt := range tests {
		if got := chooseInterfaces(links, net.ParseIP(tt.ip)); !reflect.DeepEqual(got, tt.want) {
			t.Errorf("chooseInterfaces(%q) = %v, want %v", tt.ip, got, tt.want)
		}
	}
	if got := chooseInterfaces(links[:1], nil); len(got) != 0 {
		t.Errorf("only lo: got %v", got)
	}
}

func TestSumAllowances(t *testing.T) {
	eth0, eth1 := ethtoolFixture(t, "ena-eth0.txt"), ethtoolFixture(t, "ena-eth1.txt")
	virtio, veth := ethtoolFixture(t, "virtio_net-eth0.txt"), ethtoolFixture(t, "veth-veth0.txt")
	sum := func(k string, ms ...map[string]uint64) *uint64 {
		var s uint64
		found := false
		for _, m := range ms {
			if v, ok := m[k]; ok {
				s += v
				found = true
			}
		}
		if !found {
			return nil
		}
		return &s
	}
	t.Run("two ENA, one older driver", func(t *testing.T) {
		got, err := sumAllowances([]ifaceStats{
			{Name: "eth0", Driver: "ena", Stats: eth0},
			{Name: "eth1", Driver: "ena", Stats: eth1},
			{Name: "veth9", Driver: "veth", Stats: veth},
		})
		if err != nil {
			t.Fatal(err)
		}
		want := &sample.NIC{
			Interfaces:                  []string{"eth0", "eth1"},
			BwInAllowanceExceeded:       sum(enaBwIn, eth0, eth1),
			BwOutAllowanceExceeded:      sum(enaBwOut, eth0, eth1),
			PPSAllowanceExceeded:        sum(enaPPS, eth0, eth1),
			ConntrackAllowanceExceeded:  sum(enaConntrack, eth0, eth1),
			LinklocalAllowanceExceeded:  sum(enaLinklocal, eth0, eth1),
			ConntrackAllowanceAvailable: sum(enaConntrackAvail, eth0, eth1), // only eth0 has it
		}
		if !reflect.DeepEqual(got, want) {
			t.Fatalf("got %s, want %s", nicString(got), nicString(want))
		}
		if *got.BwInAllowanceExceeded != 125 || *got.ConntrackAllowanceAvailable != 76911 {
			t.Fatalf("fixture values changed? %s", nicString(got))
		}
	})
	t.Run("no ENA names the drivers", func(t *testing.T) {
		_, err := sumAllowances([]ifaceStats{{Name: "eth0", Driver: "virtio_net", Stats: virtio}, {Name: "veth0", Driver: "veth", Stats: veth}})
		want := "unavailable: no ENA allowance counters (interfaces: eth0 driver virtio_net, veth0 driver veth)"
		if !errors.Is(err, ErrUnavailable) || err.Error() != want {
			t.Fatalf("err = %v, want %q", err, want)
		}
	})
	t.Run("single interface permission error keeps cause", func(t *testing.T) {
		_, err := sumAllowances([]ifaceStats{{Name: "eth0", Err: syscall.EPERM}})
		if !errors.Is(err, ErrUnavailable) || !errors.Is(err, syscall.EPERM) || !strings.Contains(err.Error(), "permission denied") {
			t.Fatalf("err = %v", err)
		}
	})
	t.Run("failed interface skipped when another has counters", func(t *testing.T) {
		got, err := sumAllowances([]ifaceStats{{Name: "dummy0", Err: syscall.EOPNOTSUPP}, {Name: "eth0", Driver: "ena", Stats: eth0}})
		if err != nil || !reflect.DeepEqual(got.Interfaces, []string{"eth0"}) {
			t.Fatalf("got %v, %v", got, err)
		}
	})
}

func nicString(n *sample.NIC) string {
	p := func(v *uint64) string {
		if v == nil {
			return "nil"
		}
		return strconv.FormatUint(*v, 10)
	}
	return fmt.Sprintf("%v in=%s out=%s pps=%s ct=%s ll=%s avail=%s", n.Interfaces, p(n.BwInAllowanceExceeded), p(n.BwOutAllowanceExceeded),
		p(n.PPSAllowanceExceeded), p(n.ConntrackAllowanceExceeded), p(n.LinklocalAllowanceExceeded), p(n.ConntrackAllowanceAvailable))
}

func TestNICCollect(t *testing.T) {
	fake := &fakeNIC{
		links:   []nicLink{{Name: "lo", Up: true, Loopback: true}, up("ens5", "10.0.0.5"), up("docker0", "172.17.0.1")},
		drivers: map[string]string{"ens5": "ena", "docker0": "bridge"},
		files:   map[string]string{"ens5": "testdata/ethtool/ena-eth0.txt"},
		errs:    map[string]error{"docker0": syscall.EOPNOTSUPP},
	}
	tests := []struct {
		name    string
		cfg     NICConfig
		ifaces  []string
		wantErr string
	}{
		{"owner of the target address", NICConfig{TargetIP: "10.0.0.5"}, []string{"ens5"}, ""},
		{"loopback target sums all up non-lo", NICConfig{TargetIP: "127.0.0.1"}, []string{"ens5"}, ""},
		{"explicit list", NICConfig{Interfaces: []string{"docker0"}}, nil,
			"no ENA allowance counters (interfaces: docker0 driver bridge (no stats: operation not supported))"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			src := newNIC(tt.cfg, func() (nicBackend, error) { return fake, nil })
			var s sample.Sample
			err := src.Collect(context.Background(), &s)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("err = %v, want %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(s.NIC.Interfaces, tt.ifaces) || *s.NIC.ConntrackAllowanceExceeded != 41 {
				t.Fatalf("got %s", nicString(s.NIC))
			}
			if err := src.Close(); err != nil || !fake.closed {
				t.Fatalf("Close: %v, closed %v", err, fake.closed)
			}
		})
	}
	t.Run("only loopback", func(t *testing.T) {
		lo := &fakeNIC{links: []nicLink{{Name: "lo", Up: true, Loopback: true}}}
		src := newNIC(NICConfig{}, func() (nicBackend, error) { return lo, nil })
		err := src.Collect(context.Background(), &sample.Sample{})
		if !errors.Is(err, ErrUnavailable) || !strings.Contains(err.Error(), "no network interface up besides loopback") {
			t.Fatalf("err = %v", err)
		}
	})
	t.Run("open refused", func(t *testing.T) {
		src := newNIC(NICConfig{}, func() (nicBackend, error) { return nil, os.ErrPermission })
		err := src.Collect(context.Background(), &sample.Sample{})
		if !errors.Is(err, ErrUnavailable) || !strings.Contains(err.Error(), "open ethtool socket: permission denied") {
			t.Fatalf("err = %v", err)
		}
	})
}

// TestNICBackoff: while no interface has ENA counters the answer is
// repeated without asking the namespace, re-checked after 1 s, 2 s, 4 s…
// (at most a minute); counters that appear are read at the next re-check
// and every sample after.
func TestNICBackoff(t *testing.T) {
	fake := &countingNIC{fakeNIC: fakeNIC{
		links:   []nicLink{up("ens5", "10.0.0.5")},
		drivers: map[string]string{"ens5": "virtio_net"},
		errs:    map[string]error{"ens5": syscall.EOPNOTSUPP},
	}}
	now := time.Unix(1000, 0)
	src := newNIC(NICConfig{}, func() (nicBackend, error) { return fake, nil })
	src.now = func() time.Time { return now }
	collect := func() error { return src.Collect(context.Background(), &sample.Sample{}) }
	first := collect()
	if !errors.Is(first, ErrUnavailable) {
		t.Fatalf("err = %v, want unavailable", first)
	}
	steps := []struct {
		advance   time.Duration
		wantLinks int
	}{
		{0, 1}, {999 * time.Millisecond, 1}, // within the first second: the same answer, not asked
		{time.Millisecond, 2},              // 1 s: re-checked
		{time.Second, 2}, {time.Second, 3}, // then after 2 s
		{3 * time.Second, 3}, {time.Second, 4}, // then after 4 s
	}
	for i, st := range steps {
		now = now.Add(st.advance)
		if err := collect(); err == nil || err.Error() != first.Error() {
			t.Fatalf("step %d: err = %v, want %v", i, err, first)
		}
		if fake.links != st.wantLinks {
			t.Fatalf("step %d: namespace asked %d times, want %d", i, fake.links, st.wantLinks)
		}
	}
	// The counters appear (a driver update): read at the next re-check,
	// then every sample.
	fake.files = map[string]string{"ens5": "testdata/ethtool/ena-eth0.txt"}
	fake.errs = nil
	now = now.Add(8 * time.Second)
	for i := range 2 {
		var s sample.Sample
		if err := src.Collect(context.Background(), &s); err != nil || s.NIC == nil {
			t.Fatalf("after the counters appeared, sample %d: err %v, nic %v", i, err, s.NIC)
		}
	}
	if fake.links != 6 {
		t.Fatalf("namespace asked %d times, want 6", fake.links)
	}
}

// countingNIC counts the link listings (one per real collect).
type countingNIC struct {
	fakeNIC
	links int
}

func (c *countingNIC) Links() ([]nicLink, error) { c.links++; return c.fakeNIC.Links() }
