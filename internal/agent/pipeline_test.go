package agent

import (
	"context"
	"testing"

	"github.com/stormguard/stormguard/internal/detect"
	"github.com/stormguard/stormguard/internal/sample"
)

func TestPaceFor(t *testing.T) {
	occ := func(f float64) *float64 { return &f }
	for _, tc := range []struct {
		name    string
		st      detect.State
		occ     *float64
		dropped *float64
		want    Pace
	}{
		{"calm, no queue reading", detect.Calm, nil, nil, Pace{Fast: false, Heavy: true}},
		{"calm, queue low", detect.Calm, occ(0.49), occ(0), Pace{Fast: false, Heavy: true}},
		{"calm, queue half full", detect.Calm, occ(0.5), nil, Pace{Fast: true, Heavy: true}},
		// A Valkey restart's reconnect wave: the namespace counted drops,
		// this port's queue polls read it empty and its own drop counter
		// is not learned yet; sample fast until it is.
		{"calm, drops not pinned on this port", detect.Calm, occ(0), occ(18), Pace{Fast: true, Heavy: true}},
		{"surge", detect.Surge, nil, nil, Pace{Fast: true, Heavy: false}},
		{"storm", detect.Storm, occ(0), nil, Pace{Fast: true, Heavy: false}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := paceFor(tc.st, detect.View{AcceptOccupancy: tc.occ, DroppedRate: tc.dropped}); got != tc.want {
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

// TestIdentityKeepsLastRole: a sample whose INFO was late (no Valkey
// reading, or one without a role) keeps the role and node ID, so
// stormguard_target_info does not vanish for a sample.
func TestIdentityKeepsLastRole(t *testing.T) {
	var p pipeline
	steps := []struct {
		name       string
		v          *sample.Valkey
		role, node string
	}{
		{"before any INFO", nil, "", ""},
		{"primary", &sample.Valkey{Role: "master"}, "primary", ""},
		{"INFO late", nil, "primary", ""},
		{"INFO without role", &sample.Valkey{}, "primary", ""},
		{"cluster node", &sample.Valkey{Role: "master", ClusterNodeID: "abc"}, "primary", "abc"},
		{"promoted replica", &sample.Valkey{Role: "slave"}, "replica", "abc"},
		{"INFO late again", nil, "replica", "abc"},
	}
	for _, s := range steps {
		role, node := p.identity(&sample.Sample{Valkey: s.v})
		if role != s.role || node != s.node {
			t.Errorf("%s: identity = %q, %q; want %q, %q", s.name, role, node, s.role, s.node)
		}
	}
}
