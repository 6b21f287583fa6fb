package source

import (
	"bytes"
	"context"
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"strconv"
	"strings"
	"testing"

	"github.com/stormguard/stormguard/internal/sample"
)

// lookupByColumn finds name in a "Sec: names" / "Sec: values" file by
// column position: a deliberately naive second implementation to check the
// parser against real kernel files without hard-coding their values.
func lookupByColumn(t *testing.T, file, sec, name string) *uint64 {
	t.Helper()
	b, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(string(b), "\n")
	for i := 0; i+1 < len(lines); i++ {
		h := strings.Fields(lines[i])
		if len(h) == 0 || h[0] != sec+":" {
			continue
		}
		v := strings.Fields(lines[i+1])
		for j := range h {
			if h[j] == name {
				n, err := strconv.ParseUint(v[j], 10, 64)
				if err != nil {
					t.Fatalf("%s %s %s: %v", file, sec, name, err)
				}
				return &n
			}
		}
		return nil
	}
	return nil
}

// tcpFields lists sample.TCP's fields with their section and kernel name.
var tcpFields = []struct{ field, sec, name string }{
	{"ListenOverflows", "TcpExt", "ListenOverflows"},
	{"ListenDrops", "TcpExt", "ListenDrops"},
	{"ReqQFullDrop", "TcpExt", "TCPReqQFullDrop"},
	{"ReqQFullDoCookies", "TcpExt", "TCPReqQFullDoCookies"},
	{"SyncookiesSent", "TcpExt", "SyncookiesSent"},
	{"SyncookiesRecv", "TcpExt", "SyncookiesRecv"},
	{"SyncookiesFailed", "TcpExt", "SyncookiesFailed"},
	{"SynRetrans", "TcpExt", "TCPSynRetrans"},
	{"PassiveOpens", "Tcp", "PassiveOpens"},
	{"ActiveOpens", "Tcp", "ActiveOpens"},
	{"AttemptFails", "Tcp", "AttemptFails"},
	{"EstabResets", "Tcp", "EstabResets"},
	{"CurrEstab", "Tcp", "CurrEstab"},
}

func TestTCPStatFixtures(t *testing.T) {
	for _, root := range []string{"testdata/proc-6.18", "testdata/proc-2.6.32-handmade"} {
		t.Run(filepath.Base(root), func(t *testing.T) {
			src := NewTCPStat(TCPStatConfig{ProcRoot: root})
			defer src.Close()
			var s sample.Sample
			if err := src.Collect(context.Background(), &s); err != nil {
				t.Fatal(err)
			}
			if s.TCP == nil {
				t.Fatal("no TCP part")
			}
			v := reflect.ValueOf(*s.TCP)
			if v.NumField() != len(tcpFields) {
				t.Fatalf("sample.TCP has %d fields, test knows %d: map the new one", v.NumField(), len(tcpFields))
			}
			for _, f := range tcpFields {
				file := root + "/net/netstat"
				if f.sec == "Tcp" {
					file = root + "/net/snmp"
				}
				want := lookupByColumn(t, file, f.sec, f.name)
				got := v.FieldByName(f.field).Interface().(*uint64)
				switch {
				case want == nil && got != nil:
					t.Errorf("%s = %d, want nil (%s absent)", f.field, *got, f.name)
				case want != nil && got == nil:
					t.Errorf("%s = nil, want %d", f.field, *want)
				case want != nil && *want != *got:
					t.Errorf("%s = %d, want %d", f.field, *got, *want)
				}
			}
		})
	}
}

// The real 6.18 file has every counter; the hand-made old one lacks three,
// which must be nil (JSON null), not zero.
func TestTCPStatOldKernelFieldsNil(t *testing.T) {
	tcp := parseFixture(t, "testdata/proc-2.6.32-handmade")
	if tcp.ReqQFullDrop != nil || tcp.ReqQFullDoCookies != nil || tcp.SynRetrans != nil {
		t.Errorf("counters this kernel lacks must be nil: %+v %+v %+v", tcp.ReqQFullDrop, tcp.ReqQFullDoCookies, tcp.SynRetrans)
	}
	if tcp.ListenOverflows == nil || *tcp.ListenOverflows != 317 || *tcp.ListenDrops != 329 || *tcp.CurrEstab != 66 {
		t.Errorf("hand-made values not mapped: %+v", tcp)
	}
	tcp = parseFixture(t, "testdata/proc-6.18")
	v := reflect.ValueOf(*tcp)
	for i := 0; i < v.NumField(); i++ {
		if v.Field(i).IsNil() {
			t.Errorf("6.18 has every counter; %s is nil", v.Type().Field(i).Name)
		}
	}
}

func parseFixture(t *testing.T, root string) *sample.TCP {
	t.Helper()
	ns, err := os.ReadFile(root + "/net/netstat")
	if err != nil {
		t.Fatal(err)
	}
	sn, err := os.ReadFile(root + "/net/snmp")
	if err != nil {
		t.Fatal(err)
	}
	tcp, err := ParseTCPStats(bytes.NewReader(ns), bytes.NewReader(sn))
	if err != nil {
		t.Fatal(err)
	}
	return tcp
}

func TestParseTCPStatsErrors(t *testing.T) {
	_, err := ParseTCPStats(strings.NewReader("IpExt: A\nIpExt: 1\n"), strings.NewReader("Ip: A\nIp: 1\n"))
	if err == nil || !strings.Contains(err.Error(), "neither a TcpExt") {
		t.Fatalf("err = %v", err)
	}
	_, err = ParseTCPStats(strings.NewReader("TcpExt: A\n"), strings.NewReader(""))
	if err == nil || !strings.HasPrefix(err.Error(), "netstat: ") {
		t.Fatalf("err = %v, want a netstat: error", err)
	}
	// snmp alone is enough: the TcpExt counters are nil.
	tcp, err := ParseTCPStats(strings.NewReader(""), strings.NewReader("Tcp: CurrEstab\nTcp: 3\n"))
	if err != nil || tcp.ListenOverflows != nil || *tcp.CurrEstab != 3 {
		t.Fatalf("tcp = %+v, err = %v", tcp, err)
	}
}

func TestTCPStatMissingProcIsUnavailable(t *testing.T) {
	src := NewTCPStat(TCPStatConfig{ProcRoot: t.TempDir()})
	err := src.Collect(context.Background(), &sample.Sample{})
	if !errors.Is(err, ErrUnavailable) {
		t.Fatalf("Collect on an empty proc root = %v, want unavailable", err)
	}
}

func TestTCPStatRereadsChangingFile(t *testing.T) {
	root := t.TempDir()
	if err := os.MkdirAll(root+"/net", 0o755); err != nil {
		t.Fatal(err)
	}
	write := func(overflows int) {
		t.Helper()
		ns := "TcpExt: ListenOverflows\nTcpExt: " + strconv.Itoa(overflows) + "\n"
		if err := os.WriteFile(root+"/net/netstat", []byte(ns), 0o644); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(root+"/net/snmp", []byte("Tcp: CurrEstab\nTcp: 1\n"), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	src := NewTCPStat(TCPStatConfig{ProcRoot: root})
	for _, n := range []int{5, 123456} {
		write(n)
		var s sample.Sample
		if err := src.Collect(context.Background(), &s); err != nil {
			t.Fatal(err)
		}
		if got := *s.TCP.ListenOverflows; got != uint64(n) {
			t.Fatalf("ListenOverflows = %d, want %d", got, n)
		}
	}
}
