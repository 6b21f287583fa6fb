package checklist

import (
	"bytes"
	"encoding/json"
	"os"
	"regexp"
	"sort"
	"strings"
	"testing"
)

// StableIDs are the finding ids of the command-line contract (docs/contract.md).
var stableIDs = []string{
	"somaxconn-truncates-backlog", "syncookies-disabled", "abort-on-overflow-enabled",
	"listen-overflows-seen", "rejected-connections-seen", "clients-near-maxclients",
	"conntrack-near-full", "fd-limit-below-maxclients", "nic-allowance-exceeded",
}

// sourceIDs scans the rule files for the ids they can emit.
func sourceIDs(t *testing.T) []string {
	t.Helper()
	re := regexp.MustCompile(`(?:const id(?:, title)? = |newFinding\(Area[A-Za-z]+, )"([a-z0-9-]+)"`)
	seen := map[string]bool{}
	for _, file := range []string{"kernel.go", "conntrack.go", "valkey.go", "history.go", "nic.go", "clients.go"} {
		b, err := os.ReadFile(file)
		if err != nil {
			t.Fatal(err)
		}
		for _, m := range re.FindAllStringSubmatch(string(b), -1) {
			seen[m[1]] = true
		}
	}
	var ids []string
	for id := range seen {
		ids = append(ids, id)
	}
	sort.Strings(ids)
	return ids
}

func TestStableIDsExist(t *testing.T) {
	ids := strings.Join(sourceIDs(t), " ") + " "
	for _, id := range stableIDs {
		if !strings.Contains(ids, id+" ") {
			t.Errorf("stable id %s is emitted by no rule", id)
		}
	}
}

// TestDocsCoverEveryID checks docs/checklist.md has a section whose anchor
// is each id.
func TestDocsCoverEveryID(t *testing.T) {
	b, err := os.ReadFile("../../" + DocPath)
	if err != nil {
		t.Fatal(err)
	}
	for _, id := range sourceIDs(t) {
		if !bytes.Contains(b, []byte("\n## "+id+"\n")) {
			t.Errorf("%s has no \"## %s\" section", DocPath, id)
		}
	}
}

// badFacts plants every misconfiguration at once.
func badFacts() *Facts {
	return &Facts{
		Sysctls: sysctls(sysSomaxconn, "64", sysSyncookies, "0", sysAbortOnOverflow, "1", sysMaxSynBacklog, "128", sysSynRetries, "6"),
		Counters: map[string]uint64{"TcpExt.ListenOverflows": 10, "TcpExt.ListenDrops": 10,
			"Tcp.PassiveOpens": 0, "Tcp.ActiveOpens": 0},
		CountersLater: map[string]uint64{"TcpExt.ListenOverflows": 20, "TcpExt.ListenDrops": 20,
			"Tcp.PassiveOpens": 1000, "Tcp.ActiveOpens": 0},
		Window:    second,
		Conntrack: ConntrackFacts{Loaded: true, Count: u64(950), Max: u64(1000)},
		Valkey: valkeyFacts(sysctls("tcp-backlog", "511", "maxclients", "100", "tcp-keepalive", "0"),
			sysctls("connected_clients", "95", "rejected_connections", "5", "valkey_version", "8.0.1")),
		Process: ProcessFacts{PID: 1, Via: "test", MaxOpenFiles: u64(64)},
		NIC:     &NICFacts{Interfaces: []string{"ens5"}, Stats: map[string]uint64{"conntrack_allowance_exceeded": 3}},
	}
}

func TestEvaluateEveryStableID(t *testing.T) {
	fs := Evaluate(badFacts())
	got := map[string]Severity{}
	for _, f := range fs {
		if _, dup := got[f.ID]; dup {
			t.Errorf("duplicate finding %s", f.ID)
		}
		got[f.ID] = f.Severity
	}
	for _, id := range stableIDs {
		if sev, ok := got[id]; !ok || sev < Warning {
			t.Errorf("%s: %v present %v, want warning or critical", id, sev, ok)
		}
	}
	if Worst(fs) != Critical {
		t.Errorf("Worst = %s", Worst(fs))
	}
	if Worst(nil) != OK {
		t.Error("Worst(nil) != ok")
	}
}

func TestSeverity(t *testing.T) {
	for _, s := range []Severity{OK, Info, Warning, Critical} {
		p, err := ParseSeverity(strings.ToUpper(s.String()))
		if err != nil || p != s {
			t.Errorf("round trip %s: %v %v", s, p, err)
		}
		b, _ := json.Marshal(s)
		var back Severity
		if err := json.Unmarshal(b, &back); err != nil || back != s {
			t.Errorf("JSON round trip %s: %s %v", s, b, err)
		}
	}
	if _, err := ParseSeverity("fatal"); err == nil {
		t.Error("fatal accepted")
	}
	if Severity(9).String() != "severity(9)" {
		t.Error(Severity(9).String())
	}
}

func TestRenderJSON(t *testing.T) {
	var buf bytes.Buffer
	if err := Render(&buf, FormatJSON, Evaluate(badFacts()), RenderOptions{}); err != nil {
		t.Fatal(err)
	}
	var doc struct {
		Findings []map[string]any `json:"findings"`
	}
	if err := json.Unmarshal(buf.Bytes(), &doc); err != nil {
		t.Fatal(err)
	}
	if len(doc.Findings) == 0 {
		t.Fatal("no findings")
	}
	for _, f := range doc.Findings {
		for _, k := range []string{"id", "severity", "title", "evidence", "fix", "area", "doc"} {
			if _, ok := f[k]; !ok {
				t.Errorf("finding %v lacks key %q", f["id"], k)
			}
		}
		switch f["severity"] {
		case "ok", "info", "warning", "critical":
		default:
			t.Errorf("severity %v", f["severity"])
		}
	}
	buf.Reset()
	_ = Render(&buf, FormatJSON, nil, RenderOptions{})
	if strings.TrimSpace(buf.String()) != "{\n  \"findings\": []\n}" {
		t.Errorf("empty report %q", buf.String())
	}
}

func TestRenderTableAndMarkdown(t *testing.T) {
	fs := []Finding{
		newFinding(AreaKernel, "syncookies-disabled", Warning, "SYN cookies are disabled", "net.ipv4.tcp_syncookies = 0", "sysctl -w net.ipv4.tcp_syncookies=1"),
		newFinding(AreaNIC, "nic-allowance-exceeded", Info, "a | b", "x", ""),
	}
	var plain, color, md bytes.Buffer
	_ = Render(&plain, FormatTable, fs, RenderOptions{})
	_ = Render(&color, FormatTable, fs, RenderOptions{Color: true})
	_ = Render(&md, FormatMarkdown, fs, RenderOptions{})
	if strings.Contains(plain.String(), "\x1b[") {
		t.Error("plain table has escape codes")
	}
	if !strings.Contains(color.String(), "\x1b[33mWARNING") {
		t.Errorf("coloured table: %q", color.String())
	}
	for _, s := range []string{"WARNING   syncookies-disabled", "fix: sysctl -w net.ipv4.tcp_syncookies=1", "0 critical, 1 warning, 1 info, 0 ok"} {
		if !strings.Contains(plain.String(), s) {
			t.Errorf("table lacks %q:\n%s", s, plain.String())
		}
	}
	for _, s := range []string{"| warning | [syncookies-disabled](docs/checklist.md#syncookies-disabled) |", `a \| b`} {
		if !strings.Contains(md.String(), s) {
			t.Errorf("markdown lacks %q:\n%s", s, md.String())
		}
	}
	if _, err := ParseFormat("yaml"); err == nil {
		t.Error("yaml accepted")
	}
}

func TestWriteSysctl(t *testing.T) {
	f := badFacts()
	f.NetNS = "/var/run/netns/blue"
	var buf bytes.Buffer
	if err := WriteSysctl(&buf, f, Evaluate(f)); err != nil {
		t.Fatal(err)
	}
	out := buf.String()
	for _, s := range []string{"net.core.somaxconn = 511", "net.ipv4.tcp_syncookies = 1", "net.ipv4.tcp_abort_on_overflow = 0",
		"net.ipv4.tcp_max_syn_backlog = 1024", "net.netfilter.nf_conntrack_max = 2000", "namespace /var/run/netns/blue", "# somaxconn-truncates-backlog:"} {
		if !strings.Contains(out, s) {
			t.Errorf("snippet lacks %q:\n%s", s, out)
		}
	}
	buf.Reset()
	good := &Facts{Sysctls: sysctls(sysSomaxconn, "4096", sysSyncookies, "1", sysAbortOnOverflow, "0")}
	_ = WriteSysctl(&buf, good, Evaluate(good))
	if !strings.Contains(buf.String(), "Nothing to change") || strings.Contains(buf.String(), " = ") {
		t.Errorf("good snippet:\n%s", buf.String())
	}
}
