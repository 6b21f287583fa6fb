package sample

import (
	"context"
	"fmt"
	"sync"
	"time"
)

// Source fills its part of a Sample for one target. Implementations write
// only their own fields and return an error (ideally one that unwraps to
// signal.ErrUnavailable) when their part cannot be read.
type Source interface {
	// Name is the key used in Sample.Errors, e.g. "listenq" or "valkey".
	Name() string
	// Collect fills s. It must respect ctx's deadline.
	Collect(ctx context.Context, s *Sample) error
}

// Sampler publishes one Sample per interval for one target. Every source runs
// concurrently with a deadline; a slow or stuck source never delays the
// sample, which is published on time with that source's part left nil and the
// reason recorded in Errors.
type Sampler struct {
	Target   string
	Port     int
	NetNS    string
	Sources  []Source
	Interval time.Duration
	// Deadline bounds each source's Collect. Zero means 80% of Interval.
	Deadline time.Duration
	// Now returns the current time; nil means time.Now.
	Now func() time.Time

	mu      sync.Mutex
	running map[string]bool
	last    time.Time
}

// deadline returns the per-source deadline.
func (sm *Sampler) deadline() time.Duration {
	if sm.Deadline > 0 {
		return sm.Deadline
	}
	d := sm.Interval * 8 / 10
	if d <= 0 {
		d = 800 * time.Millisecond
	}
	return d
}

func (sm *Sampler) now() time.Time {
	if sm.Now != nil {
		return sm.Now()
	}
	return time.Now()
}

// Once takes one sample now.
func (sm *Sampler) Once(ctx context.Context) *Sample {
	start := sm.now()
	s := &Sample{
		Time:            start,
		Target:          sm.Target,
		Port:            sm.Port,
		NetNS:           sm.NetNS,
		Errors:          map[string]string{},
		SourceDurations: map[string]float64{},
	}
	sm.mu.Lock()
	if !sm.last.IsZero() {
		s.IntervalMS = float64(start.Sub(sm.last).Microseconds()) / 1000
	}
	sm.last = start
	if sm.running == nil {
		sm.running = map[string]bool{}
	}
	sm.mu.Unlock()

	type result struct {
		name string
		part *Sample
		err  error
		took time.Duration
	}
	ctx, cancel := context.WithTimeout(ctx, sm.deadline())
	defer cancel()
	results := make(chan result, len(sm.Sources))
	launched := 0
	for _, src := range sm.Sources {
		name := src.Name()
		sm.mu.Lock()
		busy := sm.running[name]
		if !busy {
			sm.running[name] = true
		}
		sm.mu.Unlock()
		if busy {
			// The previous collection has not returned: never pile up
			// goroutines behind a stuck source.
			s.Errors[name] = "stale: previous collection still running"
			continue
		}
		launched++
		go func(src Source) {
			t0 := time.Now()
			part := &Sample{}
			err := src.Collect(ctx, part)
			sm.mu.Lock()
			sm.running[name] = false
			sm.mu.Unlock()
			results <- result{name: name, part: part, err: err, took: time.Since(t0)}
		}(src)
	}
	for i := 0; i < launched; i++ {
		select {
		case r := <-results:
			s.SourceDurations[r.name] = float64(r.took.Microseconds()) / 1000
			if r.err != nil {
				s.Errors[r.name] = r.err.Error()
			}
			s.merge(r.part)
		case <-ctx.Done():
			// Whatever has not answered is recorded as timed out; its
			// goroutine finishes on its own and its part is discarded.
			pending := map[string]bool{}
			for _, src := range sm.Sources {
				if _, ok := s.SourceDurations[src.Name()]; !ok {
					if _, stale := s.Errors[src.Name()]; !stale {
						pending[src.Name()] = true
					}
				}
			}
			// Drain answers that raced with the deadline.
			for {
				select {
				case r := <-results:
					delete(pending, r.name)
					s.SourceDurations[r.name] = float64(r.took.Microseconds()) / 1000
					if r.err != nil {
						s.Errors[r.name] = r.err.Error()
					}
					s.merge(r.part)
					continue
				default:
				}
				break
			}
			for name := range pending {
				s.Errors[name] = fmt.Sprintf("timeout: no answer within %s", sm.deadline())
			}
			return s
		}
	}
	return s
}

// Run publishes a sample every Interval until ctx is done. Ticks are aligned
// to the interval; when a tick is missed (the process was descheduled) the
// next sample reports the longer IntervalMS instead of bunching up.
func (sm *Sampler) Run(ctx context.Context, publish func(*Sample)) {
	t := time.NewTicker(sm.Interval)
	defer t.Stop()
	for {
		publish(sm.Once(ctx))
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// merge copies the parts o has into s. Each source fills distinct fields, so
// a non-nil field in o is that source's answer.
func (s *Sample) merge(o *Sample) {
	if o.Listen != nil {
		s.Listen = o.Listen
	}
	if o.SynRecv != nil {
		s.SynRecv = o.SynRecv
	}
	if o.Established != nil {
		s.Established = o.Established
	}
	if o.CountsAgeMS != nil {
		s.CountsAgeMS = o.CountsAgeMS
	}
	if o.TCP != nil {
		s.TCP = o.TCP
	}
	if o.Conntrack != nil {
		s.Conntrack = o.Conntrack
	}
	if o.Valkey != nil {
		s.Valkey = o.Valkey
	}
	if o.NIC != nil {
		s.NIC = o.NIC
	}
}
