package tui

import (
	"encoding/json"
	"fmt"
	"sort"
	"strings"
	"time"

	tea "github.com/charmbracelet/bubbletea"
	"github.com/charmbracelet/lipgloss"

	"github.com/stormguard/stormguard/internal/detect"
	"github.com/stormguard/stormguard/internal/serve"
)

// Feed returns the current views and recent events; it is polled every
// Interval.
type Feed func() ([]serve.TargetView, []json.RawMessage, error)

// Model is the bubbletea model.
type Model struct {
	feed     Feed
	interval time.Duration
	width    int
	height   int
	views    []serve.TargetView
	events   []json.RawMessage
	hist     map[string][]float64
	lastTime map[string]time.Time
	err      error
	source   string
	plain    bool // Print's frames: no keys are read
}

// New returns a model polling feed every interval; source names it in the
// header ("agent http://…" or "local").
func New(feed Feed, interval time.Duration, source string) Model {
	return Model{feed: feed, interval: interval, width: 80, height: 24, hist: map[string][]float64{}, lastTime: map[string]time.Time{}, source: source}
}

type tickMsg time.Time

type dataMsg struct {
	views  []serve.TargetView
	events []json.RawMessage
	err    error
}

func (m Model) poll() tea.Cmd {
	return func() tea.Msg {
		v, e, err := m.feed()
		return dataMsg{v, e, err}
	}
}

func (m Model) tick() tea.Cmd {
	return tea.Tick(m.interval, func(t time.Time) tea.Msg { return tickMsg(t) })
}

// Init starts polling.
func (m Model) Init() tea.Cmd { return tea.Batch(m.poll(), m.tick()) }

// Update handles keys, resizes, ticks and data.
func (m Model) Update(msg tea.Msg) (tea.Model, tea.Cmd) {
	switch msg := msg.(type) {
	case tea.KeyMsg:
		switch msg.String() {
		case "q", "ctrl+c", "esc":
			return m, tea.Quit
		}
	case tea.WindowSizeMsg:
		m.width, m.height = msg.Width, msg.Height
	case tickMsg:
		return m, tea.Batch(m.poll(), m.tick())
	case dataMsg:
		m.err = msg.err
		if msg.err == nil {
			m.views, m.events = msg.views, msg.events
			for _, v := range m.views {
				if v.Sample == nil || !v.Sample.Time.After(m.lastTime[v.Target]) {
					continue
				}
				m.lastTime[v.Target] = v.Sample.Time
				rate := 0.0
				if v.View != nil && v.View.NewConnRate != nil {
					rate = *v.View.NewConnRate
				}
				h := append(m.hist[v.Target], rate)
				if len(h) > 120 {
					h = h[len(h)-120:]
				}
				m.hist[v.Target] = h
			}
		}
	}
	return m, nil
}

var (
	bold       = lipgloss.NewStyle().Bold(true)
	dim        = lipgloss.NewStyle().Faint(true)
	stateStyle = map[string]lipgloss.Style{
		"calm":       lipgloss.NewStyle().Bold(true).Foreground(lipgloss.Color("2")),
		"surge":      lipgloss.NewStyle().Bold(true).Foreground(lipgloss.Color("3")),
		"storm":      lipgloss.NewStyle().Bold(true).Foreground(lipgloss.Color("15")).Background(lipgloss.Color("1")),
		"recovering": lipgloss.NewStyle().Bold(true).Foreground(lipgloss.Color("4")),
	}
)

// View renders the screen.
func (m Model) View() string {
	w := m.width
	if w < 40 {
		w = 40
	}
	var b strings.Builder
	quit := "q quits"
	if m.plain {
		quit = "Ctrl-C quits"
	}
	hdr := fmt.Sprintf("stormguard top — %s — %s — %s", m.source, time.Now().Format("15:04:05"), quit)
	b.WriteString(bold.Render(clip(hdr, w)) + "\n")
	if m.err != nil {
		b.WriteString(stateStyle["storm"].Render(clip("feed error: "+m.err.Error(), w)) + "\n")
	}
	if len(m.views) == 0 {
		b.WriteString(dim.Render("no targets yet…") + "\n")
	}
	lines := 1
	for _, v := range m.views {
		block := m.target(v, w)
		b.WriteString(block)
		lines += strings.Count(block, "\n")
	}
	// Last events, as many as fit.
	room := m.height - lines - 2
	if room > 0 && len(m.events) > 0 {
		b.WriteString(bold.Render("events") + "\n")
		evs := m.events
		if len(evs) > room {
			evs = evs[len(evs)-room:]
		}
		for i := len(evs) - 1; i >= 0; i-- {
			b.WriteString(clip(eventLine(evs[i]), w) + "\n")
		}
	}
	return b.String()
}

func (m Model) target(v serve.TargetView, w int) string {
	var d detect.View
	if v.View != nil {
		d = *v.View
	}
	st := stateStyle[v.Name]
	since := ""
	if !v.Since.IsZero() {
		since = " for " + time.Since(v.Since).Round(time.Second).String()
	}
	role := ""
	if v.Role != "" {
		role = " (" + v.Role + ")"
	}
	var b strings.Builder
	b.WriteString(bold.Render(v.Target) + role + "  " + st.Render(" "+strings.ToUpper(v.Name)+" ") + dim.Render(since) + "\n")
	if v.Verdict != "" {
		b.WriteString("  " + clip(v.Verdict, w-2) + "\n")
	}
	spark := sparkline(m.hist[v.Target], w-34)
	b.WriteString(fmt.Sprintf("  %-12s %s %s\n", "new conn/s", spark, rateWithBase(d.NewConnRate, d.NewConnBaseline)))
	b.WriteString(fmt.Sprintf("  %-12s %-22s %-10s %s\n", "accept queue", pair(d.AcceptDepthMax, d.AcceptLimit)+" peak", "SYN_RECV", u(d.SynRecv)))
	b.WriteString(fmt.Sprintf("  %-12s %-22s %-10s %s\n", "drops/s", fl(d.DroppedRate), "overflow/s", fl(d.Rates.ListenOverflows)))
	b.WriteString(fmt.Sprintf("  %-12s %-22s %-10s %s\n", "clients", pair(d.ConnectedClients, d.MaxClients), "reject/s", fl(d.Rates.ValkeyRejectedConnections)))
	b.WriteString(fmt.Sprintf("  %-12s %-22s %-10s %s\n", "conntrack", pair(d.ConntrackCount, d.ConntrackMax), "PING ms", fl2(d.PingMS)))
	if d.AcceptWaitP99MS != nil {
		// eBPF only: handshake done -> accept(), p99 of the interval.
		b.WriteString(fmt.Sprintf("  %-12s %-22s %-10s %s\n", "accept wait", fl2(d.AcceptWaitP99MS)+" ms p99", "normal ms", fl2(d.AcceptWaitBaselineMS)))
	}
	if v.Sample != nil && len(v.Sample.Errors) > 0 {
		keys := make([]string, 0, len(v.Sample.Errors))
		for k := range v.Sample.Errors {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		b.WriteString(dim.Render(clip("  unavailable: "+strings.Join(keys, ", "), w)) + "\n")
	}
	return b.String()
}

func eventLine(raw json.RawMessage) string {
	var e struct {
		Time                      time.Time
		Type, Target, Action      string
		From, To, Reason, Verdict string
	}
	if json.Unmarshal(raw, &e) != nil {
		return string(raw)
	}
	what := e.Verdict
	if what == "" {
		what = e.Reason
	}
	if e.Type == "state" {
		return fmt.Sprintf("%s %s %s→%s %s", e.Time.Local().Format("15:04:05"), e.Target, e.From, e.To, what)
	}
	return fmt.Sprintf("%s %s %s %s %s", e.Time.Local().Format("15:04:05"), e.Target, e.Type, e.Action, what)
}

var bars = []rune("▁▂▃▄▅▆▇█")

func sparkline(h []float64, width int) string {
	if width < 8 {
		width = 8
	}
	if width > 40 {
		width = 40
	}
	if len(h) > width {
		h = h[len(h)-width:]
	}
	max := 0.0
	for _, v := range h {
		if v > max {
			max = v
		}
	}
	var b strings.Builder
	for i := 0; i < width-len(h); i++ {
		b.WriteRune(' ')
	}
	for _, v := range h {
		i := 0
		if max > 0 {
			i = int(v / max * float64(len(bars)-1))
		}
		b.WriteRune(bars[i])
	}
	return b.String()
}

func rateWithBase(r, base *float64) string {
	s := fl(r)
	if base != nil {
		s += fmt.Sprintf(" (base %.0f)", *base)
	}
	return s
}

func u(p *uint64) string {
	if p == nil {
		return "–"
	}
	return fmt.Sprint(*p)
}

func pair(a, b *uint64) string { return u(a) + "/" + u(b) }

func fl(p *float64) string {
	if p == nil {
		return "–"
	}
	return fmt.Sprintf("%.0f", *p)
}

func fl2(p *float64) string {
	if p == nil {
		return "–"
	}
	return fmt.Sprintf("%.2f", *p)
}

// clip cuts s to width display cells.
func clip(s string, width int) string {
	if lipgloss.Width(s) <= width {
		return s
	}
	r := []rune(s)
	for len(r) > 0 && lipgloss.Width(string(r)) > width-1 {
		r = r[:len(r)-1]
	}
	return string(r) + "…"
}
