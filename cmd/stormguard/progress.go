package main

import (
	"fmt"
	"io"
	"sync"
	"time"
)

// progress keeps one status line on a terminal's stderr during a long run:
// the current step and the time spent on it, redrawn every tick and erased
// when done. It writes nothing at all when disabled (stderr is a pipe or a
// file), so scripts and JSON consumers never see it.
type progress struct {
	w      io.Writer
	prefix string
	tick   time.Duration

	mu    sync.Mutex
	step  string
	start time.Time
	drawn bool
	stop  chan struct{}
	done  chan struct{}
}

// newProgress returns a progress line on w, or a no-op one when !enabled.
func newProgress(w io.Writer, prefix string, enabled bool) *progress {
	if !enabled {
		return nil
	}
	p := &progress{w: w, prefix: prefix, tick: 100 * time.Millisecond, stop: make(chan struct{}), done: make(chan struct{})}
	go p.loop()
	return p
}

// Step shows a new step (safe on a nil progress).
func (p *progress) Step(s string) {
	if p == nil {
		return
	}
	p.mu.Lock()
	p.step, p.start = s, time.Now()
	p.drawLocked()
	p.mu.Unlock()
}

// Done erases the line and stops redrawing (safe on nil, idempotent).
func (p *progress) Done() {
	if p == nil {
		return
	}
	p.mu.Lock()
	select {
	case <-p.stop:
		p.mu.Unlock()
		return
	default:
	}
	close(p.stop)
	p.mu.Unlock()
	<-p.done
	p.mu.Lock()
	if p.drawn {
		fmt.Fprint(p.w, "\r\033[K")
	}
	p.mu.Unlock()
}

func (p *progress) loop() {
	defer close(p.done)
	t := time.NewTicker(p.tick)
	defer t.Stop()
	for {
		select {
		case <-p.stop:
			return
		case <-t.C:
			p.mu.Lock()
			p.drawLocked()
			p.mu.Unlock()
		}
	}
}

func (p *progress) drawLocked() {
	if p.step == "" {
		return
	}
	// \r and erase-line redraw in place; the line never ends in \n.
	fmt.Fprintf(p.w, "\r\033[K%s: %s … %.1fs", p.prefix, p.step, time.Since(p.start).Seconds())
	p.drawn = true
}
