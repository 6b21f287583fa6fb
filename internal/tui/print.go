package tui

import (
	"context"
	"fmt"
	"io"
	"time"
)

// Print writes the view to out as plain text every interval until ctx
// ends, each frame after a blank line: top's output when stdout is not a
// terminal (a pipe, a file, a log), where the full-screen UI's cursor
// movement and alternate screen would be noise. The styles render as plain
// text there too: lipgloss leaves them out when stdout is not a terminal.
func Print(ctx context.Context, m Model, out io.Writer) error {
	m.plain = true
	tick := time.NewTicker(m.interval)
	defer tick.Stop()
	for first := true; ; first = false {
		views, events, err := m.feed()
		next, _ := m.Update(dataMsg{views, events, err})
		m = next.(Model)
		frame := m.View()
		if !first {
			frame = "\n" + frame
		}
		if _, err := io.WriteString(out, frame); err != nil {
			return fmt.Errorf("write top's frame: %w", err)
		}
		select {
		case <-ctx.Done():
			return nil
		case <-tick.C:
		}
	}
}
