package agent

import (
	"context"
	"testing"

	"github.com/stormguard/stormguard/internal/detect"
)

func TestPaceFor(t *testing.T) {
	occ := func(f float64) *float64 { return &f }
	for _, tc := range []struct {
		name string
		st   detect.State
		occ  *float64
		want Pace
	}{
		{"calm, no queue reading", detect.Calm, nil, Pace{Fast: false, Heavy: true}},
		{"calm, queue low", detect.Calm, occ(0.49), Pace{Fast: false, Heavy: true}},
		{"calm, queue half full", detect.Calm, occ(0.5), Pace{Fast: true, Heavy: true}},
		{"surge", detect.Surge, nil, Pace{Fast: true, Heavy: false}},
		{"storm", detect.Storm, occ(0), Pace{Fast: true, Heavy: false}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := paceFor(tc.st, detect.View{AcceptOccupancy: tc.occ}); got != tc.want {
				t.Errorf("paceFor = %+v, want %+v", got, tc.want)
			}
		})
	}
}

func TestKeepVerdict(t *testing.T) {
	var p pipeline
	steps := []struct {
		st    detect.State
		fresh string
		want  string
	}{
		{detect.Calm, "", ""},
		{detect.Surge, "surge: x", "surge: x"},
		{detect.Surge, "", "surge: x"},
		{detect.Storm, "storm: y", "storm: y"},
		{detect.Calm, "calm again", "calm again"},
		{detect.Calm, "", ""},
	}
	for i, s := range steps {
		if got := p.keepVerdict(s.st, s.fresh); got != s.want {
			t.Errorf("step %d: keepVerdict(%v, %q) = %q, want %q", i, s.st, s.fresh, got, s.want)
		}
	}
}

func TestSinksInOrder(t *testing.T) {
	var got []int
	ss := Sinks{
		SinkFunc(func(context.Context, Update) { got = append(got, 1) }),
		SinkFunc(func(context.Context, Update) { got = append(got, 2) }),
		Sinks{SinkFunc(func(context.Context, Update) { got = append(got, 3) })},
	}
	ss.Handle(context.Background(), Update{})
	if len(got) != 3 || got[0] != 1 || got[1] != 2 || got[2] != 3 {
		t.Errorf("sinks ran as %v, want [1 2 3]", got)
	}
}
