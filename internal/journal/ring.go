package journal

import (
	"time"

	"github.com/stormguard/stormguard/internal/sample"
)

// Ring keeps the most recent samples of one target, bounded by count.
type Ring struct {
	buf  []*sample.Sample
	next int
	full bool
}

// NewRing returns a ring holding at most n samples.
func NewRing(n int) *Ring {
	if n < 1 {
		n = 1
	}
	return &Ring{buf: make([]*sample.Sample, n)}
}

// Add appends s, evicting the oldest when full.
func (r *Ring) Add(s *sample.Sample) {
	r.buf[r.next] = s
	r.next = (r.next + 1) % len(r.buf)
	if r.next == 0 {
		r.full = true
	}
}

// Len is the number of samples held.
func (r *Ring) Len() int {
	if r.full {
		return len(r.buf)
	}
	return r.next
}

// Since returns the samples newer than t, oldest first.
func (r *Ring) Since(t time.Time) []*sample.Sample {
	n := r.Len()
	start := 0
	if r.full {
		start = r.next
	}
	out := make([]*sample.Sample, 0, n)
	for i := 0; i < n; i++ {
		s := r.buf[(start+i)%len(r.buf)]
		if s.Time.After(t) {
			out = append(out, s)
		}
	}
	return out
}
