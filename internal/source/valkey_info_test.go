package source

import (
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"testing"
	"unsafe"

	"github.com/stormguard/stormguard/internal/valkeyconn"
)

// grepInfo finds "key:value" in raw INFO text the naive way, as a check on
// parseInfo that shares none of its code.
func grepInfo(text, key string) (string, bool) {
	for _, line := range strings.Split(strings.ReplaceAll(text, "\r\n", "\n"), "\n") {
		if strings.HasPrefix(line, key+":") {
			return strings.TrimPrefix(line, key+":"), true
		}
	}
	return "", false
}

func TestParseInfoFixtures(t *testing.T) {
	// Captured from valkey-server 8.0.1 with
	// `valkey-cli INFO clients stats memory server replication cpu` (and
	// INFO everything) after a few rejected connections, a failed AUTH and
	// an unknown command; the replica ran with --replicaof.
	tests := []struct {
		file     string
		role     string
		rejected uint64
	}{
		{"valkey-8.0.1-primary.txt", "master", 3},
		{"valkey-8.0.1-replica.txt", "slave", 0},
		{"valkey-8.0.1-everything.txt", "master", 3},
	}
	for _, tt := range tests {
		t.Run(tt.file, func(t *testing.T) {
			b, err := os.ReadFile(filepath.Join("testdata", "info", tt.file))
			if err != nil {
				t.Fatal(err)
			}
			text := string(b)
			m := valkeyconn.ParseInfo(text)
			v := valkeyFromInfo(m)
			if v.Role != tt.role {
				t.Errorf("role = %q, want %q", v.Role, tt.role)
			}
			if v.Version != "8.0.1" {
				t.Errorf("version = %q, want valkey_version 8.0.1 (not redis_version 7.2.4)", v.Version)
			}
			if v.RejectedConnections == nil || *v.RejectedConnections != tt.rejected {
				t.Errorf("rejected_connections = %v, want %d", v.RejectedConnections, tt.rejected)
			}
			// Every field must equal what a naive grep of the text finds.
			uints := map[string]*uint64{
				"connected_clients": v.ConnectedClients, "maxclients": v.MaxClients,
				"total_connections_received": v.TotalConnectionsReceived, "rejected_connections": v.RejectedConnections,
				"cluster_connections": v.ClusterConnections, "blocked_clients": v.BlockedClients,
				"evicted_clients": v.EvictedClients, "total_error_replies": v.TotalErrorReplies,
				"acl_access_denied_auth": v.ACLAccessDeniedAuth, "used_memory": v.UsedMemory,
			}
			for k, p := range uints {
				raw, ok := grepInfo(text, k)
				if !ok {
					t.Errorf("fixture lacks %s", k)
					continue
				}
				if p == nil {
					t.Errorf("%s = nil, text has %q", k, raw)
					continue
				}
				if got := strconv.FormatUint(*p, 10); got != raw {
					t.Errorf("%s = %s, text has %q", k, got, raw)
				}
			}
			for k, p := range map[string]*float64{"used_cpu_sys": v.UsedCPUSys, "used_cpu_user": v.UsedCPUUser} {
				raw, _ := grepInfo(text, k)
				want, err := strconv.ParseFloat(raw, 64)
				if err != nil || p == nil || *p != want {
					t.Errorf("%s = %v, text has %q", k, p, raw)
				}
			}
			// Values holding colons survive whole.
			if raw, _ := grepInfo(text, "listener0"); m["listener0"] != raw {
				t.Errorf("listener0 = %q, want %q", m["listener0"], raw)
			}
		})
	}
}

func TestParseInfoEdgeCases(t *testing.T) {
	tests := []struct {
		name string
		in   string
		key  string
		want string
		has  bool
	}{
		{"crlf", "# Clients\r\nconnected_clients:7\r\n", "connected_clients", "7", true},
		{"lf only", "# Clients\nconnected_clients:7\n", "connected_clients", "7", true},
		{"no final newline", "connected_clients:7", "connected_clients", "7", true},
		{"resp3 verbatim prefix", "txt:# Clients\r\nconnected_clients:7\r\n", "connected_clients", "7", true},
		{"value with colons", "executable:/usr/bin/valkey:server\r\n", "executable", "/usr/bin/valkey:server", true},
		{"empty value", "config_file:\r\n", "config_file", "", true},
		{"first duplicate wins", "a:1\r\na:2\r\n", "a", "1", true},
		{"header is not a key", "# Server:x\r\n", "# Server", "", false},
		{"line without colon", "garbage\r\n", "garbage", "", false},
		{"empty key", ":5\r\n", "", "", false},
		{"empty input", "", "connected_clients", "", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			m := valkeyconn.ParseInfo(tt.in)
			got, ok := m[tt.key]
			if ok != tt.has || got != tt.want {
				t.Fatalf("valkeyconn.ParseInfo(%q)[%q] = %q, %v; want %q, %v", tt.in, tt.key, got, ok, tt.want, tt.has)
			}
		})
	}
}

func TestValkeyFromInfo(t *testing.T) {
	t.Run("missing and malformed stay nil", func(t *testing.T) {
		v := valkeyFromInfo(valkeyconn.ParseInfo("connected_clients:abc\r\nrejected_connections:-1\r\nused_cpu_sys:x\r\n"))
		if v.ConnectedClients != nil || v.RejectedConnections != nil || v.UsedCPUSys != nil || v.MaxClients != nil {
			t.Fatalf("malformed or missing fields must be nil, got %+v", v)
		}
	})
	t.Run("redis_version when there is no valkey_version", func(t *testing.T) {
		v := valkeyFromInfo(valkeyconn.ParseInfo("redis_version:7.2.4\r\n"))
		if v.Version != "7.2.4" {
			t.Fatalf("version = %q, want 7.2.4", v.Version)
		}
	})
	t.Run("no maxclients in INFO (before Redis 7)", func(t *testing.T) {
		b, err := os.ReadFile(filepath.Join("testdata", "info", "valkey-8.0.1-primary.txt"))
		if err != nil {
			t.Fatal(err)
		}
		var kept []string
		for _, l := range strings.Split(string(b), "\r\n") {
			if !strings.HasPrefix(l, "maxclients:") {
				kept = append(kept, l)
			}
		}
		v := valkeyFromInfo(valkeyconn.ParseInfo(strings.Join(kept, "\r\n")))
		if v.MaxClients != nil {
			t.Fatalf("maxclients = %d, want nil (the source then asks CONFIG GET)", *v.MaxClients)
		}
		if v.ConnectedClients == nil {
			t.Fatal("connected_clients lost")
		}
	})
}

// formatInfo writes m back as INFO text, keys sorted.
func formatInfo(m map[string]string) string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	var b strings.Builder
	b.WriteString("# Section\r\n")
	for _, k := range keys {
		b.WriteString(k + ":" + m[k] + "\r\n")
	}
	return b.String()
}

func FuzzParseInfo(f *testing.F) {
	files, _ := filepath.Glob(filepath.Join("testdata", "info", "*.txt"))
	for _, p := range files {
		b, err := os.ReadFile(p)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(string(b))
	}
	for _, s := range []string{"", "\r\n", ":", "a:", ":b", "txt:", "txt:a:1", "#\r\n#x:y", "a:1\r\na:2", "a\rb:c\r\r\n", "maxclients:18446744073709551616", "used_cpu_sys:NaN"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, in string) {
		m := valkeyconn.ParseInfo(in)
		for k, v := range m {
			if k == "" || strings.ContainsAny(k, ":\n") || k[0] == '#' {
				t.Fatalf("bad key %q", k)
			}
			if strings.ContainsRune(v, '\n') || strings.HasSuffix(v, "\r") {
				t.Fatalf("bad value %q for %q", v, k)
			}
		}
		// Writing the map back out and parsing it again gives the same
		// map, unless a key or value has a stray CR that line parsing
		// legitimately changes.
		again := valkeyconn.ParseInfo(formatInfo(m))
		clean := true
		for k, v := range m {
			if strings.ContainsRune(k+v, '\r') || strings.HasPrefix(k, "txt:") {
				clean = false
			}
		}
		if clean {
			if len(again) != len(m) {
				t.Fatalf("round trip changed size %d -> %d", len(m), len(again))
			}
			for k, v := range m {
				if again[k] != v {
					t.Fatalf("round trip changed %q: %q -> %q", k, v, again[k])
				}
			}
		}
		v := valkeyFromInfo(m)
		check := func(key string, p *uint64) {
			raw, ok := m[key]
			n, err := strconv.ParseUint(raw, 10, 64)
			if (p != nil) != (ok && err == nil) {
				t.Fatalf("%s: pointer %v but text %q", key, p, raw)
			}
			if p != nil && *p != n {
				t.Fatalf("%s = %d, text %q", key, *p, raw)
			}
		}
		check("connected_clients", v.ConnectedClients)
		check("maxclients", v.MaxClients)
		check("rejected_connections", v.RejectedConnections)
		check("total_connections_received", v.TotalConnectionsReceived)
		check("acl_access_denied_auth", v.ACLAccessDeniedAuth)
	})
}

// TestValkeyFromInfoDoesNotPinReply: the strings kept in a Sample must not
// be substrings of the INFO reply, or every sample the agent keeps (15
// minutes of them) pins its whole reply.
func TestValkeyFromInfoDoesNotPinReply(t *testing.T) {
	text := "# Server\r\nredis_version:7.2.4\r\nvalkey_version:8.0.1\r\n" + strings.Repeat("x_pad:1\r\n", 500) + "# Replication\r\nrole:master\r\n"
	v := valkeyFromInfo(valkeyconn.ParseInfo(text))
	lo := uintptr(unsafe.Pointer(unsafe.StringData(text)))
	hi := lo + uintptr(len(text))
	for name, s := range map[string]string{"role": v.Role, "version": v.Version} {
		if s == "" {
			t.Fatalf("%s empty", name)
		}
		if p := uintptr(unsafe.Pointer(unsafe.StringData(s))); p >= lo && p < hi {
			t.Errorf("%s %q points into the INFO reply", name, s)
		}
	}
}
