package defuse

import (
	"errors"
	"testing"
	"time"
)

func TestParseRate(t *testing.T) {
	tests := []struct {
		in      string
		want    Rate
		wantErr bool
	}{
		{in: "20/s", want: Rate{20, "second"}},
		{in: "100/m", want: Rate{100, "minute"}},
		{in: "5/second", want: Rate{5, "second"}},
		{in: "300/min", want: Rate{300, "minute"}},
		{in: "7/h", want: Rate{7, "hour"}},
		{in: " 9 / S ", want: Rate{9, "second"}},
		{in: "abc", wantErr: true},
		{in: "20", wantErr: true},
		{in: "0/s", wantErr: true},
		{in: "-1/s", wantErr: true},
		{in: "20/fortnight", wantErr: true},
		{in: "1.5/s", wantErr: true},
		{in: "/s", wantErr: true},
		{in: "99999999999/s", wantErr: true},
	}
	for _, tt := range tests {
		got, err := ParseRate(tt.in)
		if tt.wantErr {
			if err == nil || !errors.Is(err, ErrBadInput) {
				t.Errorf("ParseRate(%q) = %v, %v; want ErrBadInput", tt.in, got, err)
			}
			continue
		}
		if err != nil || got != tt.want {
			t.Errorf("ParseRate(%q) = %v, %v; want %v", tt.in, got, err, tt.want)
		}
	}
	if got := (Rate{100, "minute"}).String(); got != "100/minute" {
		t.Errorf("String = %q", got)
	}
	if got := (Rate{120, "minute"}).PerSecond(); got != 2 {
		t.Errorf("PerSecond = %v", got)
	}
}

func TestParseAction(t *testing.T) {
	for _, a := range Actions {
		if got, err := ParseAction(string(a)); err != nil || got != a {
			t.Errorf("ParseAction(%q) = %q, %v", a, got, err)
		}
	}
	if _, err := ParseAction("nuke"); !errors.Is(err, ErrBadInput) {
		t.Errorf("ParseAction(nuke) err = %v, want ErrBadInput", err)
	}
}

func TestValidate(t *testing.T) {
	ttl := time.Minute
	tests := []struct {
		name    string
		a       Action
		p       Params
		wantErr bool
		check   func(t *testing.T, p Params)
	}{
		{name: "no ttl", a: RatelimitSYN, p: Params{Port: 6379, Rate: Rate{20, "second"}}, wantErr: true},
		{name: "no port", a: RatelimitSYN, p: Params{TTL: ttl, Rate: Rate{20, "second"}}, wantErr: true},
		{name: "no rate", a: RatelimitGlobal, p: Params{TTL: ttl, Port: 6379}, wantErr: true},
		{name: "burst default", a: RatelimitSYN, p: Params{TTL: ttl, Port: 6379, Rate: Rate{20, "second"}},
			check: func(t *testing.T, p Params) {
				if p.Burst != 20 {
					t.Errorf("burst = %d, want 20", p.Burst)
				}
			}},
		{name: "burst min 5", a: RatelimitSYN, p: Params{TTL: ttl, Port: 6379, Rate: Rate{1, "second"}},
			check: func(t *testing.T, p Params) {
				if p.Burst != 5 {
					t.Errorf("burst = %d, want 5", p.Burst)
				}
			}},
		{name: "notrack", a: Notrack, p: Params{TTL: ttl, Port: 6379}},
		{name: "port range", a: Notrack, p: Params{TTL: ttl, Port: 70000}, wantErr: true},
		{name: "accept-cap no value", a: AcceptCap, p: Params{TTL: ttl}, wantErr: true},
		{name: "accept-cap too big", a: AcceptCap, p: Params{TTL: ttl, Value: 1001}, wantErr: true},
		{name: "accept-cap ok", a: AcceptCap, p: Params{TTL: ttl, Value: 100}},
		{name: "backlog defaults", a: Backlog, p: Params{TTL: ttl},
			check: func(t *testing.T, p Params) {
				if p.Somaxconn != 4096 || p.SynBacklog != 4096 {
					t.Errorf("defaults = %d/%d", p.Somaxconn, p.SynBacklog)
				}
			}},
		{name: "kill-idle unconfirmed", a: KillIdle, p: Params{TTL: ttl}, wantErr: true},
		{name: "kill-idle bad near", a: KillIdle, p: Params{TTL: ttl, ConfirmKill: true, NearFraction: 2}, wantErr: true},
		{name: "kill-idle defaults", a: KillIdle, p: Params{TTL: ttl, ConfirmKill: true},
			check: func(t *testing.T, p Params) {
				if p.MinIdle != time.Minute || p.NearFraction != 0.9 {
					t.Errorf("defaults = %s/%v", p.MinIdle, p.NearFraction)
				}
			}},
		{name: "unknown", a: Action("x"), p: Params{TTL: ttl}, wantErr: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := tt.p
			err := p.Validate(tt.a)
			if tt.wantErr != (err != nil) {
				t.Fatalf("Validate = %v, wantErr %v", err, tt.wantErr)
			}
			if err != nil && !errors.Is(err, ErrBadInput) {
				t.Fatalf("error %v does not wrap ErrBadInput", err)
			}
			if tt.check != nil {
				tt.check(t, p)
			}
		})
	}
}

func FuzzParseRate(f *testing.F) {
	for _, s := range []string{"20/s", "100/m", "abc", "0/s", "5/second", "1/d", "/", "18446744073709551616/s"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		r, err := ParseRate(s)
		if err != nil {
			return
		}
		if r.N == 0 || unitSeconds[r.Unit] == 0 {
			t.Fatalf("ParseRate(%q) accepted invalid %+v", s, r)
		}
		back, err := ParseRate(r.String())
		if err != nil || back != r {
			t.Fatalf("round trip of %q: %+v → %q → %+v, %v", s, r, r.String(), back, err)
		}
	})
}

// Every action has exactly one actuator, and the table names no others.
func TestActuatorTable(t *testing.T) {
	if len(actuators) != len(Actions) {
		t.Fatalf("%d actuators for %d actions", len(actuators), len(Actions))
	}
	for _, a := range Actions {
		act, ok := actuators[a]
		if !ok {
			t.Fatalf("no actuator for %s", a)
		}
		if a.Describe() == "" {
			t.Errorf("%s: empty description", a)
		}
		if act.kernelExpiry() != a.nft() {
			t.Errorf("%s: kernelExpiry %v but nft %v", a, act.kernelExpiry(), a.nft())
		}
	}
	if Action("nope").Describe() != "" {
		t.Error("unknown action has a description")
	}
}
