package report

import (
	"bytes"
	"net/netip"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stormguard/stormguard/internal/detect"
	"github.com/stormguard/stormguard/internal/journal"
	"github.com/stormguard/stormguard/internal/sample"
)

// writeStormCapture runs a synthetic storm through the real detector and
// journal, as the agent does, and returns the capture path.
func writeStormCapture(t *testing.T) string {
	t.Helper()
	dir := t.TempDir()
	j := journal.Open(journal.Options{Dir: dir, Interval: 500 * time.Millisecond})
	det := detect.New(detect.Config{})
	t0 := time.Date(2026, 3, 1, 2, 0, 0, 0, time.UTC)
	var opens, overflows, received, rejected uint64 = 1000, 0, 1000, 0
	for i := 0; i < 400; i++ { // 200 s
		now := t0.Add(time.Duration(i) * 500 * time.Millisecond)
		depth, clients := uint64(0), uint64(50)
		wait := 0.4 // ms, eBPF accept wait p99
		switch {
		case i >= 300 && i < 330: // 15 s storm
			opens += 2500
			overflows += 800
			received += 2500
			rejected += 100
			depth, clients = 128, 1000
			wait = 420
		default:
			opens += 10
			received += 10
		}
		s := &sample.Sample{Time: now, Target: "127.0.0.1:6379", Port: 6379, Errors: map[string]string{},
			Listen:       &sample.Listen{Depth: sample.U64(depth), DepthMax: sample.U64(depth), Limit: sample.U64(128), Sockets: 1},
			SynRecv:      sample.U64(depth),
			AcceptWaitMS: &sample.AcceptWait{P50: sample.F64(wait / 2), P99: sample.F64(wait), Max: sample.F64(wait)},
			TCP:          &sample.TCP{PassiveOpens: sample.U64(opens), ListenOverflows: sample.U64(overflows), ListenDrops: sample.U64(overflows)},
			Valkey: &sample.Valkey{ConnectedClients: sample.U64(clients), MaxClients: sample.U64(1000),
				TotalConnectionsReceived: sample.U64(received), RejectedConnections: sample.U64(rejected), PingMS: sample.F64(0.3)},
		}
		j.Sample(s)
		_, evs := det.Observe(s)
		for _, ev := range evs {
			if ev.To == detect.Storm {
				// What the agent adds: the kernel-side attribution.
				at := detect.Attribute([]netip.Addr{netip.MustParseAddr("10.0.3.7"), netip.MustParseAddr("10.0.3.7"), netip.MustParseAddr("10.0.3.9"), netip.MustParseAddr("10.9.0.1")}, 3)
				ev.Evidence.Attribution = &detect.SourceAttribution{Time: ev.Time, Basis: "new_sockets", Attribution: at}
			}
			j.Event(ev.Target, ev.Time, ev.To.String(), ev)
			if ev.To == detect.Storm {
				// What the agent adds at onset: kernel findings and an
				// armed mitigation.
				j.Event(ev.Target, ev.Time, "", map[string]any{"time": ev.Time, "type": "checklist", "target": ev.Target,
					"findings": []map[string]string{{"id": "somaxconn-truncates-backlog", "severity": "warning", "title": "somaxconn truncates tcp-backlog", "evidence": "somaxconn=128 < tcp-backlog=511", "fix": "sysctl -w net.core.somaxconn=511"}}})
				j.Event(ev.Target, ev.Time, "", map[string]any{"time": ev.Time, "type": "defuse", "target": ev.Target, "action": "applied",
					"reason": "storm detected", "mitigation": map[string]any{"action": "ratelimit-syn", "rate": "20/second"}})
			}
		}
	}
	j.Close()
	p, err := Latest(dir)
	if err != nil {
		t.Fatal(err)
	}
	return p
}

func TestAnalyzeAndRender(t *testing.T) {
	path := writeStormCapture(t)
	a, err := Analyze(path, detect.Config{})
	if err != nil {
		t.Fatal(err)
	}
	if a.Worst != detect.Storm || a.Verdict == "" || a.Target != "127.0.0.1:6379" {
		t.Fatalf("worst %v verdict %q target %q", a.Worst, a.Verdict, a.Target)
	}
	if a.Peaks.AcceptDepthMax != 128 || a.Peaks.AcceptLimit != 128 || a.Peaks.Rejected < 1000 {
		t.Fatalf("peaks %+v", a.Peaks)
	}
	if a.Peaks.AcceptWaitP99MS != 420 {
		t.Fatalf("accept wait peak %.1f ms, want 420 (the storm's p99)", a.Peaks.AcceptWaitP99MS)
	}
	if a.Peaks.NewConnRate < 4000 {
		t.Fatalf("new connection peak %.0f/s, want ≈5000/s", a.Peaks.NewConnRate)
	}
	// The capture starts 60 s before onset.
	if first := a.Points[0].Time.Sub(a.Onset); first > -55*time.Second {
		t.Fatalf("capture starts %s from onset, want about -60s", first)
	}
	titles := map[string]bool{}
	for _, ad := range a.Advice {
		titles[ad.Title] = true
	}
	for _, want := range []string{"The accept queue filled up", "Valkey refused connections at maxclients", "Clients reconnected in lock-step"} {
		if !titles[want] {
			t.Errorf("advice missing %q (have %v)", want, titles)
		}
	}

	var html bytes.Buffer
	if err := a.HTML(&html); err != nil {
		t.Fatal(err)
	}
	h := html.String()
	if n := strings.Count(h, "<svg"); n < 4 {
		t.Errorf("HTML has %d inline charts, want ≥4", n)
	}
	if !strings.Contains(h, `id="timeline"`) {
		t.Error("HTML lacks the timeline table")
	}
	for _, want := range []string{a.Verdict, "storm", "128 of 128", "Accept wait (p99, eBPF)", "420.0 ms"} {
		if !strings.Contains(h, htmlEscape(want)) {
			t.Errorf("HTML lacks %q", want)
		}
	}
	if strings.Contains(h, "http://") && !strings.Contains(h, "http://www.w3.org") {
		t.Error("HTML references an external resource")
	}
	if len(a.Findings) != 1 || a.Findings[0].ID != "somaxconn-truncates-backlog" || len(a.Mitigations) != 1 {
		t.Fatalf("findings %+v mitigations %+v", a.Findings, a.Mitigations)
	}
	for _, want := range []string{`id="findings"`, "somaxconn-truncates-backlog", `id="mitigations"`, "ratelimit-syn", `id="attribution"`, "10.0.3.0/24", "75%"} {
		if !strings.Contains(h, want) {
			t.Errorf("HTML lacks %q", want)
		}
	}
	var md bytes.Buffer
	if err := a.Markdown(&md); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(md.String(), "## Timeline") || !strings.Contains(md.String(), "| storm |") {
		t.Errorf("markdown:\n%s", md.String()[:500])
	}
}

// htmlEscape escapes like html/template does for the few characters our
// expectations contain.
func htmlEscape(s string) string {
	return strings.NewReplacer("&", "&amp;", "<", "&lt;", ">", "&gt;", `"`, "&#34;", "'", "&#39;", "+", "&#43;").Replace(s)
}

func TestLatestErrors(t *testing.T) {
	if _, err := Latest(filepath.Join(t.TempDir(), "nope")); err == nil {
		t.Fatal("want error for missing directory")
	}
	if _, err := Latest(t.TempDir()); err == nil || !strings.Contains(err.Error(), "no storm captures") {
		t.Fatalf("empty dir: %v", err)
	}
}
