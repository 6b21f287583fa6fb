package report

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"time"

	"github.com/stormguard/stormguard/internal/detect"
	"github.com/stormguard/stormguard/internal/journal"
	"github.com/stormguard/stormguard/internal/sample"
)

// Point is one replayed sample.
type Point struct {
	Time   time.Time
	State  detect.State
	View   detect.View
	Sample *sample.Sample
}

// Analysis is what a report shows.
type Analysis struct {
	Capture string
	Target  string
	Onset   time.Time
	End     time.Time
	Points  []Point
	Events  []detect.Event
	Other   []json.RawMessage // non-state events (targets, defuse)
	// Findings are the checklist findings the agent recorded at onset.
	Findings []Finding
	// Mitigations are defuse events (applied, reverted, failed).
	Mitigations []Mitigation
	Worst       detect.State
	Verdict     string
	Evidence    *detect.Evidence
	Peaks       Peaks
	Advice      []Advice
	Complete    bool // the capture reached calm
}

// Peaks summarise the storm's extremes.
type Peaks struct {
	NewConnRate      float64
	BaselineRate     float64
	DropRate         float64
	DroppedTotal     float64
	AcceptDepthMax   uint64
	AcceptLimit      uint64
	SynRecv          uint64
	ConnectedClients uint64
	MaxClients       uint64
	Rejected         float64
	ConntrackCount   uint64
	ConntrackMax     uint64
	PingMS           float64
	// AcceptWaitP99MS is the highest per-sample p99 accept wait (eBPF;
	// 0 without it).
	AcceptWaitP99MS float64
}

// Finding is a checklist finding as recorded in a capture.
type Finding struct {
	ID       string `json:"id"`
	Severity string `json:"severity"`
	Title    string `json:"title"`
	Evidence string `json:"evidence"`
	Fix      string `json:"fix"`
}

// Mitigation is a defuse event as recorded in a capture.
type Mitigation struct {
	Time       time.Time `json:"time"`
	Action     string    `json:"action"` // applied, reverted, failed
	Reason     string    `json:"reason"`
	Mitigation struct {
		Action  string   `json:"action"`
		Rate    string   `json:"rate"`
		TTL     string   `json:"ttl"`
		Changes []string `json:"changes"`
	} `json:"mitigation"`
}

// other picks the checklist and defuse events out of a capture.
func (a *Analysis) other(raw json.RawMessage) {
	var head struct{ Type string }
	if json.Unmarshal(raw, &head) != nil {
		return
	}
	switch head.Type {
	case "checklist":
		var ev struct{ Findings []Finding }
		if json.Unmarshal(raw, &ev) == nil {
			a.Findings = append(a.Findings, ev.Findings...)
		}
	case "defuse":
		var m Mitigation
		if json.Unmarshal(raw, &m) == nil {
			a.Mitigations = append(a.Mitigations, m)
		}
	}
}

// Latest returns the newest capture file in dir.
func Latest(dir string) (string, error) {
	files, err := filepath.Glob(filepath.Join(dir, "capture-*.jsonl"))
	if err != nil {
		return "", fmt.Errorf("list captures in %s: %w", dir, err)
	}
	if len(files) == 0 {
		if _, err := os.Stat(dir); err != nil {
			return "", fmt.Errorf("journal directory %s: %w", dir, err)
		}
		return "", fmt.Errorf("no storm captures in %s (watch --journal writes one per surge or storm)", dir)
	}
	sort.Strings(files) // names start with the UTC onset time
	return files[len(files)-1], nil
}

// Analyze reads a capture and replays it through a detector with cfg.
func Analyze(path string, cfg detect.Config) (*Analysis, error) {
	lines, err := journal.ReadCapture(path)
	if err != nil && len(lines) == 0 {
		return nil, err
	}
	a := &Analysis{Capture: filepath.Base(path)}
	var samples []*sample.Sample
	for _, l := range lines {
		switch l.Kind {
		case "capture":
			a.Target, a.Onset = l.Target, l.Time
		case "sample":
			if l.Sample != nil {
				samples = append(samples, l.Sample)
			}
		case "event":
			var ev detect.Event
			if json.Unmarshal(l.Event, &ev) == nil && ev.Type == "state" {
				a.Events = append(a.Events, ev)
			} else {
				a.Other = append(a.Other, l.Event)
				a.other(l.Event)
			}
		case "end":
			a.End = l.Time
			a.Complete = true
		}
	}
	if len(samples) == 0 {
		return nil, fmt.Errorf("capture %s holds no samples", path)
	}
	if a.Target == "" {
		a.Target = samples[0].Target
	}
	if a.End.IsZero() {
		a.End = samples[len(samples)-1].Time
	}
	cfg.Target = a.Target
	det := detect.New(cfg)
	for _, s := range samples {
		st, _ := det.Observe(s)
		a.Points = append(a.Points, Point{Time: s.Time, State: st, View: det.View(), Sample: s})
	}
	a.summarise()
	return a, nil
}

func (a *Analysis) summarise() {
	p := &a.Peaks
	for _, pt := range a.Points {
		v := pt.View
		if v.NewConnRate != nil && *v.NewConnRate > p.NewConnRate {
			p.NewConnRate = *v.NewConnRate
		}
		if v.NewConnBaseline != nil && p.BaselineRate == 0 {
			p.BaselineRate = *v.NewConnBaseline
		}
		if v.DroppedRate != nil {
			p.DroppedTotal += *v.DroppedRate * v.IntervalS
			if *v.DroppedRate > p.DropRate {
				p.DropRate = *v.DroppedRate
			}
		}
		maxu(&p.AcceptDepthMax, v.AcceptDepthMax)
		maxu(&p.AcceptLimit, v.AcceptLimit)
		maxu(&p.SynRecv, v.SynRecv)
		maxu(&p.ConnectedClients, v.ConnectedClients)
		maxu(&p.MaxClients, v.MaxClients)
		maxu(&p.ConntrackCount, v.ConntrackCount)
		maxu(&p.ConntrackMax, v.ConntrackMax)
		if v.Rates.ValkeyRejectedConnections != nil {
			p.Rejected += *v.Rates.ValkeyRejectedConnections * v.IntervalS
		}
		if v.AcceptWaitP99MS != nil && *v.AcceptWaitP99MS > p.AcceptWaitP99MS {
			p.AcceptWaitP99MS = *v.AcceptWaitP99MS
		}
		if v.PingMS != nil && *v.PingMS > p.PingMS {
			p.PingMS = *v.PingMS
		}
	}
	for _, ev := range a.Events {
		if ev.To > a.Worst && ev.To != detect.Recovering {
			a.Worst = ev.To
			a.Verdict = ev.Verdict
			e := ev.Evidence
			a.Evidence = &e
		}
	}
	if a.Verdict == "" && len(a.Events) > 0 {
		a.Verdict = a.Events[0].Verdict
	}
	a.Advice = advise(a)
}

func maxu(dst *uint64, v *uint64) {
	if v != nil && *v > *dst {
		*dst = *v
	}
}

// Advice is one recommended next step.
type Advice struct {
	Title, Why, Do string
}

// advise turns the evidence into next steps. Each rule looks at what was
// measured, not at what usually happens.
func advise(a *Analysis) []Advice {
	var out []Advice
	p := a.Peaks
	if p.AcceptLimit > 0 && p.AcceptDepthMax >= p.AcceptLimit {
		out = append(out, Advice{
			Title: "The accept queue filled up",
			Why:   fmt.Sprintf("It peaked at %d of %d: Valkey was not accepting as fast as handshakes completed.", p.AcceptDepthMax, p.AcceptLimit),
			Do:    "If the limit is small, raise net.core.somaxconn and tcp-backlog together (Valkey restart needed). Check max-new-connections-per-cycle and whether the main thread was busy (TLS handshakes, slow commands). Run `stormguard check`.",
		})
	}
	if p.Rejected > 0 {
		out = append(out, Advice{
			Title: "Valkey refused connections at maxclients",
			Why:   fmt.Sprintf("%.0f connections rejected; clients peaked at %d of %d.", p.Rejected, p.ConnectedClients, p.MaxClients),
			Do:    "Bound client pools and make clients back off on `max number of clients reached` instead of redialling. Raise maxclients only with the fd limit (maxclients + 32).",
		})
	}
	if p.ConntrackMax > 0 && float64(p.ConntrackCount) > 0.8*float64(p.ConntrackMax) {
		out = append(out, Advice{
			Title: "The conntrack table nearly filled",
			Why:   fmt.Sprintf("%d of %d entries.", p.ConntrackCount, p.ConntrackMax),
			Do:    "Raise nf_conntrack_max, or exempt the Valkey port from tracking (`stormguard defuse plan` shows the NOTRACK rule and when it is unsafe).",
		})
	}
	if p.BaselineRate > 0 && p.NewConnRate > 4*p.BaselineRate || p.BaselineRate == 0 && p.NewConnRate > 400 {
		out = append(out, Advice{
			Title: "Clients reconnected in lock-step",
			Why:   fmt.Sprintf("New connections peaked at %.0f/s against a baseline of %.0f/s.", p.NewConnRate, p.BaselineRate),
			Do:    "Give clients jittered exponential backoff that resets only after proven health (Go: the stormguard `dialer` package); preview a policy with `stormguard backoff --clients N`, prove it with `stormguard storm`. During an incident, `stormguard defuse apply --action ratelimit-syn` caps per-source SYN rates.",
		})
	}
	if p.PingMS > 100 {
		out = append(out, Advice{
			Title: "Valkey's main thread slowed down",
			Why:   fmt.Sprintf("PING over stormguard's reserved connection peaked at %.0f ms.", p.PingMS),
			Do:    "Accepting, TLS handshakes and rejections all run on the main thread. Consider io-threads (Valkey 8.1 offloads TLS negotiation) and lower max-new-tls-connections-per-cycle.",
		})
	}
	if len(out) == 0 {
		out = append(out, Advice{Title: "No drops were recorded", Why: "The capture shows an early warning that did not become a storm.", Do: "Review the new-connection rate and its source; consider whether the baseline needs time to learn a new normal."})
	}
	return out
}

// Attribution is the source attribution of the worst state change, or
// of any state change that carries one.
func (a *Analysis) Attribution() *detect.SourceAttribution {
	if a.Evidence != nil && a.Evidence.Attribution != nil {
		return a.Evidence.Attribution
	}
	for _, ev := range a.Events {
		if ev.Evidence.Attribution != nil {
			return ev.Evidence.Attribution
		}
	}
	return nil
}

// Duration is the capture's span.
func (a *Analysis) Duration() time.Duration {
	if len(a.Points) == 0 {
		return 0
	}
	return a.Points[len(a.Points)-1].Time.Sub(a.Points[0].Time)
}

func stateWord(s detect.State) string { return strings.ToUpper(s.String()) }
