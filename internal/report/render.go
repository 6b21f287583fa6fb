package report

import (
	"fmt"
	"html/template"
	"io"
	"strings"
	"time"

	"github.com/stormguard/stormguard/internal/detect"
)

// HTML writes a self-contained HTML postmortem (inline CSS and SVG).
func (a *Analysis) HTML(w io.Writer) error {
	charts, err := a.Charts()
	if err != nil {
		return err
	}
	svgs := make([]template.HTML, len(charts))
	titles := make([]string, len(charts))
	for i, c := range charts {
		// The SVG is produced by gonum/plot from numbers, not from
		// captured strings, so it is safe to inline.
		svgs[i] = template.HTML(c.SVG)
		titles[i] = c.Title
	}
	return htmlTmpl.Execute(w, map[string]any{"A": a, "Charts": svgs, "Titles": titles, "Generated": time.Now().UTC()})
}

// Markdown writes the postmortem as Markdown (for a ticket or a wiki); the
// charts become a per-second table.
func (a *Analysis) Markdown(w io.Writer) error {
	var b strings.Builder
	fmt.Fprintf(&b, "# Connection storm postmortem: %s\n\n", a.Target)
	fmt.Fprintf(&b, "- **Worst state:** %s\n- **Onset:** %s\n- **Span:** %s (%d samples)%s\n- **Capture:** `%s`\n\n",
		stateWord(a.Worst), a.Onset.UTC().Format(time.RFC3339Nano), a.Duration().Round(time.Millisecond), len(a.Points), incomplete(a), a.Capture)
	if a.Verdict != "" {
		fmt.Fprintf(&b, "## Verdict\n\n%s\n\n", a.Verdict)
	}
	if a.Evidence != nil && len(a.Evidence.Signals) > 0 {
		b.WriteString("## Evidence\n\n| signal | scope | value | threshold | per-port evidence |\n|---|---|---|---|---|\n")
		for _, s := range a.Evidence.Signals {
			fmt.Fprintf(&b, "| %s | %s | %.4g %s | %.4g | %v |\n", s.Text, s.Scope, s.Value, s.Unit, s.Threshold, s.PerPortEvidence)
		}
		b.WriteString("\n")
	}
	if at := a.Attribution(); at != nil && len(at.TopPrefixes) > 0 {
		fmt.Fprintf(&b, "## Who was connecting\n\nFrom the kernel's socket dump (%s, %d connections):\n\n| source | connections | share |\n|---|---|---|\n", at.Basis, at.Total)
		for _, src := range at.TopPrefixes {
			fmt.Fprintf(&b, "| %s | %d | %.0f%% |\n", src.Prefix, src.Count, 100*src.Share)
		}
		for _, src := range at.TopIPs {
			fmt.Fprintf(&b, "| %s | %d | %.0f%% |\n", src.IP, src.Count, 100*src.Share)
		}
		b.WriteString("\n")
	}
	b.WriteString("## Peaks\n\n")
	for _, kv := range a.PeakRows() {
		fmt.Fprintf(&b, "- %s: %s\n", kv[0], kv[1])
	}
	b.WriteString("\n## Timeline\n\n| time | from | to | reason |\n|---|---|---|---|\n")
	for _, ev := range a.Events {
		fmt.Fprintf(&b, "| %s | %s | %s | %s |\n", rel(a, ev.Time), ev.From, ev.To, strings.ReplaceAll(ev.Reason, "|", "\\|"))
	}
	if len(a.Mitigations) > 0 {
		b.WriteString("\n## Mitigations\n\n| time | what | action | reason |\n|---|---|---|---|\n")
		for _, m := range a.Mitigations {
			fmt.Fprintf(&b, "| %s | %s | %s %s | %s |\n", rel(a, m.Time), m.Action, m.Mitigation.Action, m.Mitigation.Rate, strings.ReplaceAll(m.Reason, "|", "\\|"))
		}
	}
	if len(a.Findings) > 0 {
		b.WriteString("\n## Checklist findings at onset\n\n| severity | finding | evidence | fix |\n|---|---|---|---|\n")
		for _, f := range a.Findings {
			fmt.Fprintf(&b, "| %s | %s (`%s`) | %s | %s |\n", f.Severity, f.Title, f.ID, strings.ReplaceAll(f.Evidence, "|", "\\|"), strings.ReplaceAll(f.Fix, "|", "\\|"))
		}
	}
	b.WriteString("\n## Recommended next steps\n\n")
	for i, ad := range a.Advice {
		fmt.Fprintf(&b, "%d. **%s.** %s %s\n", i+1, ad.Title, ad.Why, ad.Do)
	}
	b.WriteString("\n## Per-second figures\n\n| t (s) | state | new conn/s | dropped/s | accept peak/limit | SYN_RECV | clients/max | PING ms |\n|---|---|---|---|---|---|---|---|\n")
	last := time.Time{}
	for _, p := range a.Points {
		if !last.IsZero() && p.Time.Sub(last) < time.Second {
			continue
		}
		last = p.Time
		v := p.View
		fmt.Fprintf(&b, "| %.1f | %s | %s | %s | %s/%s | %s | %s/%s | %s |\n", p.Time.Sub(a.Onset).Seconds(), p.State,
			fnum(v.NewConnRate), fnum(v.DroppedRate), unum(v.AcceptDepthMax), unum(v.AcceptLimit), unum(v.SynRecv),
			unum(v.ConnectedClients), unum(v.MaxClients), fnum(v.PingMS))
	}
	_, err := io.WriteString(w, b.String())
	return err
}

func incomplete(a *Analysis) string {
	if a.Complete {
		return ""
	}
	return " — capture still open or cut short (the agent stopped before calm)"
}

func rel(a *Analysis, t time.Time) string {
	return fmt.Sprintf("%+.1fs (%s)", t.Sub(a.Onset).Seconds(), t.UTC().Format("15:04:05.000"))
}

func fnum(p *float64) string {
	if p == nil {
		return "–"
	}
	return fmt.Sprintf("%.0f", *p)
}

func unum(p *uint64) string {
	if p == nil {
		return "–"
	}
	return fmt.Sprint(*p)
}

func (a *Analysis) PeakRows() [][2]string {
	p := a.Peaks
	rows := [][2]string{
		{"New connections", fmt.Sprintf("%.0f/s (baseline %.0f/s)", p.NewConnRate, p.BaselineRate)},
		{"Dropped or refused", fmt.Sprintf("%.0f/s at peak, about %.0f in all", p.DropRate, p.DroppedTotal)},
	}
	if p.AcceptLimit > 0 {
		rows = append(rows, [2]string{"Accept queue", fmt.Sprintf("%d of %d", p.AcceptDepthMax, p.AcceptLimit)})
	}
	if p.SynRecv > 0 {
		rows = append(rows, [2]string{"SYN_RECV", fmt.Sprint(p.SynRecv)})
	}
	if p.MaxClients > 0 {
		rows = append(rows, [2]string{"Clients", fmt.Sprintf("%d of maxclients %d; %.0f rejected", p.ConnectedClients, p.MaxClients, p.Rejected)})
	}
	if p.ConntrackMax > 0 {
		rows = append(rows, [2]string{"Conntrack", fmt.Sprintf("%d of %d", p.ConntrackCount, p.ConntrackMax)})
	}
	if p.AcceptWaitP99MS > 0 {
		rows = append(rows, [2]string{"Accept wait (p99, eBPF)", fmt.Sprintf("%.1f ms: connections waited this long in the accept queue before Valkey accepted them", p.AcceptWaitP99MS)})
	}
	if p.PingMS > 0 {
		rows = append(rows, [2]string{"PING", fmt.Sprintf("%.1f ms", p.PingMS)})
	}
	return rows
}

var htmlTmpl = template.Must(template.New("report").Funcs(template.FuncMap{
	"rel":        rel,
	"state":      func(s detect.State) string { return s.String() },
	"rfc":        func(t time.Time) string { return t.UTC().Format(time.RFC3339Nano) },
	"round":      func(d time.Duration) time.Duration { return d.Round(time.Millisecond) },
	"incomplete": incomplete,
	"pct":        func(f float64) string { return fmt.Sprintf("%.0f%%", 100*f) },
}).Parse(`<!doctype html>
<html lang="en"><head><meta charset="utf-8">
<title>Connection storm postmortem: {{.A.Target}}</title>
<style>
body{font:15px/1.5 system-ui,sans-serif;max-width:1000px;margin:2em auto;padding:0 1em;color:#222}
h1{font-size:1.5em} .state{font-weight:700;text-transform:uppercase}
.storm{color:#d62728} .surge{color:#b08800} .recovering{color:#1f77b4} .calm{color:#2ca02c}
.verdict{font-size:1.15em;background:#fff4f4;border-left:5px solid #d62728;padding:.6em 1em}
table{border-collapse:collapse;margin:1em 0} td,th{border:1px solid #ddd;padding:3px 8px;text-align:left}
figure{margin:1em 0} figcaption{font-weight:600} svg{max-width:100%;height:auto}
.meta{color:#666}
</style></head><body>
<h1>Connection storm postmortem: {{.A.Target}}</h1>
<p class="meta">Worst state <span class="state {{state .A.Worst}}">{{state .A.Worst}}</span> ·
onset {{rfc .A.Onset}} · span {{round .A.Duration}} ({{len .A.Points}} samples){{incomplete .A}} · capture <code>{{.A.Capture}}</code></p>
{{if .A.Verdict}}<h2>Verdict</h2><p class="verdict" id="verdict">{{.A.Verdict}}</p>{{end}}
{{with .A.Evidence}}{{if .Signals}}<h2>Evidence</h2>
<table><tr><th>signal</th><th>scope</th><th>value</th><th>threshold</th><th>per-port evidence</th></tr>
{{range .Signals}}<tr><td>{{.Text}}</td><td>{{.Scope}}</td><td>{{printf "%.4g" .Value}} {{.Unit}}</td><td>{{printf "%.4g" .Threshold}}</td><td>{{.PerPortEvidence}}</td></tr>{{end}}
</table>{{end}}{{end}}
{{with .A.Attribution}}{{if .TopPrefixes}}<h2>Who was connecting</h2>
<p class="meta">From the kernel's socket dump ({{.Basis}}, {{.Total}} connections).</p>
<table id="attribution"><tr><th>source</th><th>connections</th><th>share</th></tr>
{{range .TopPrefixes}}<tr><td>{{.Prefix}}</td><td>{{.Count}}</td><td>{{pct .Share}}</td></tr>{{end}}
{{range .TopIPs}}<tr><td>{{.IP}}</td><td>{{.Count}}</td><td>{{pct .Share}}</td></tr>{{end}}
</table>{{end}}{{end}}
<h2>Peaks</h2><table id="peaks">{{range .A.PeakRows}}<tr><th>{{index . 0}}</th><td>{{index . 1}}</td></tr>{{end}}</table>
<h2>Charts</h2>
{{range $i, $svg := .Charts}}<figure><figcaption>{{index $.Titles $i}}</figcaption>{{$svg}}</figure>{{end}}
<p class="meta">Shaded: surge (yellow) and storm (red), as the detector saw them.</p>
<h2>Timeline</h2>
<table id="timeline"><tr><th>time</th><th>from</th><th>to</th><th>reason</th></tr>
{{range .A.Events}}<tr><td>{{rel $.A .Time}}</td><td class="{{state .From}}">{{state .From}}</td><td class="{{state .To}}">{{state .To}}</td><td>{{.Reason}}</td></tr>{{end}}
</table>
{{if .A.Mitigations}}<h2>Mitigations</h2>
<table id="mitigations"><tr><th>time</th><th>what</th><th>action</th><th>reason</th></tr>
{{range .A.Mitigations}}<tr><td>{{rel $.A .Time}}</td><td>{{.Action}}</td><td>{{.Mitigation.Action}} {{.Mitigation.Rate}}</td><td>{{.Reason}}</td></tr>{{end}}
</table>{{end}}
{{if .A.Findings}}<h2>Checklist findings at onset</h2>
<table id="findings"><tr><th>severity</th><th>finding</th><th>evidence</th><th>fix</th></tr>
{{range .A.Findings}}<tr><td>{{.Severity}}</td><td>{{.Title}} <code>{{.ID}}</code></td><td>{{.Evidence}}</td><td><code>{{.Fix}}</code></td></tr>{{end}}
</table>{{end}}
<h2>Recommended next steps</h2><ol>
{{range .A.Advice}}<li><b>{{.Title}}.</b> {{.Why}} {{.Do}}</li>{{end}}
</ol>
<p class="meta">Generated by stormguard report at {{rfc .Generated}}.</p>
</body></html>
`))
