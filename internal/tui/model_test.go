package tui

import (
	"context"
	"encoding/json"
	"strings"
	"testing"
	"time"

	tea "github.com/charmbracelet/bubbletea"
	"github.com/charmbracelet/lipgloss"

	"github.com/stormguard/stormguard/internal/detect"
	"github.com/stormguard/stormguard/internal/sample"
	"github.com/stormguard/stormguard/internal/serve"
)

func fixedFeed(n int) Feed {
	return func() ([]serve.TargetView, []json.RawMessage, error) {
		var views []serve.TargetView
		for i := 0; i < n; i++ {
			rate, base := 4100.0, 35.0
			d := detect.View{NewConnRate: &rate, NewConnBaseline: &base, AcceptDepthMax: sample.U64(64), AcceptLimit: sample.U64(64),
				SynRecv: sample.U64(120), ConnectedClients: sample.U64(998), MaxClients: sample.U64(1000),
				AcceptWaitP99MS: sample.F64(412.5), AcceptWaitBaselineMS: sample.F64(0.4)}
			views = append(views, serve.TargetView{
				Target: "127.0.0.1:" + string(rune('0'+i)) + "379",
				State:  serve.State{Name: "storm", Code: 2, Since: time.Now().Add(-12 * time.Second), Verdict: "Connection storm on 127.0.0.1:6379: accept queue full (64/64), 1,230 dropped connections/s, new connections 4,100/s vs 35/s normal."},
				Sample: &sample.Sample{Time: time.Now(), Errors: map[string]string{"nic": "unavailable"}},
				View:   &d,
			})
		}
		ev, _ := json.Marshal(map[string]any{"time": time.Now(), "type": "state", "target": "127.0.0.1:6379", "from": "surge", "to": "storm", "verdict": "storm!"})
		return views, []json.RawMessage{ev}, nil
	}
}

func run(t *testing.T, m Model, msgs ...tea.Msg) Model {
	t.Helper()
	var tm tea.Model = m
	for _, msg := range msgs {
		tm, _ = tm.Update(msg)
	}
	return tm.(Model)
}

func TestViewFits80x24(t *testing.T) {
	m := New(fixedFeed(2), time.Second, "local")
	v, e, _ := m.feed()
	m = run(t, m, tea.WindowSizeMsg{Width: 80, Height: 24}, dataMsg{views: v, events: e})
	out := m.View()
	lines := strings.Split(strings.TrimRight(out, "\n"), "\n")
	if len(lines) > 24 {
		t.Errorf("%d lines on a 24-line terminal:\n%s", len(lines), out)
	}
	for i, l := range lines {
		if w := lipgloss.Width(l); w > 80 {
			t.Errorf("line %d is %d cells wide: %q", i, w, l)
		}
	}
	for _, want := range []string{"127.0.0.1:0379", "STORM", "64/64", "998/1000", "4100 (base 35)", "unavailable: nic", "412.50 ms p99"} {
		if !strings.Contains(out, want) {
			t.Errorf("view lacks %q:\n%s", want, out)
		}
	}
}

func TestResizeAndQuit(t *testing.T) {
	m := New(fixedFeed(1), time.Second, "local")
	v, e, _ := m.feed()
	m = run(t, m, tea.WindowSizeMsg{Width: 120, Height: 40}, dataMsg{views: v, events: e})
	if !strings.Contains(m.View(), "events") {
		t.Error("a tall terminal shows the events")
	}
	_, cmd := m.Update(tea.KeyMsg{Type: tea.KeyRunes, Runes: []rune("q")})
	if cmd == nil {
		t.Fatal("q returned no command")
	}
	if _, ok := cmd().(tea.QuitMsg); !ok {
		t.Fatal("q does not quit")
	}
}

func TestSparkline(t *testing.T) {
	s := sparkline([]float64{0, 1, 2, 4, 8}, 8)
	if []rune(s)[7] != '█' || []rune(s)[3] != '▁' || len([]rune(s)) != 8 {
		t.Fatalf("sparkline %q", s)
	}
}

// cancelAfter cancels once n frames have been written.
type cancelAfter struct {
	b      strings.Builder
	n      int
	cancel func()
}

func (w *cancelAfter) Write(p []byte) (int, error) {
	w.n--
	if w.n == 0 {
		w.cancel()
	}
	return w.b.Write(p)
}

// Print (top with stdout not a terminal) writes plain frames: the targets
// and their state, no cursor movement or alternate screen, a blank line
// between frames, and a quit hint that needs no keyboard.
func TestPrintPlainFrames(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	w := &cancelAfter{n: 2, cancel: cancel}
	if err := Print(ctx, New(fixedFeed(1), time.Millisecond, "local"), w); err != nil {
		t.Fatal(err)
	}
	out := w.b.String()
	if strings.Count(out, "stormguard top — local") != 2 || !strings.Contains(out, "\n\nstormguard top") {
		t.Fatalf("want two frames separated by a blank line:\n%s", out)
	}
	if !strings.Contains(out, "127.0.0.1:0379") || !strings.Contains(out, "STORM") || !strings.Contains(out, "Ctrl-C quits") || strings.Contains(out, "q quits") {
		t.Fatalf("frame lacks the target, its state or the right quit hint:\n%s", out)
	}
	if strings.Contains(out, "\x1b[?1049h") || strings.Contains(out, "\x1b[H") {
		t.Fatalf("plain frames hold terminal control sequences: %q", out)
	}
}
