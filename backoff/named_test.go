package backoff

import (
	"errors"
	"testing"
	"time"
)

func TestByName(t *testing.T) {
	tests := []struct {
		name    string
		p       Params
		want    Policy
		wantErr bool
	}{
		{"immediate", Params{}, Immediate{}, false},
		{"fixed", Params{Delay: time.Second}, Fixed{Every: time.Second}, false},
		{"glide", Params{GLIDE: DefaultGLIDE()}, DefaultGLIDE(), false},
		{"full-jitter", Params{Base: time.Millisecond, Cap: time.Second}, FullJitter{Base: time.Millisecond, Cap: time.Second}, false},
		{"equal-jitter", Params{}, EqualJitter{}, false},
		{"decorrelated", Params{Base: time.Second}, DecorrelatedJitter{Base: time.Second}, false},
		{"grpc", Params{Base: 2 * time.Second}, func() GRPC { g := DefaultGRPC(); g.Initial = 2 * time.Second; return g }(), false},
		{"glide", Params{GLIDE: GLIDE{Factor: 100}}, nil, true}, // 0 retries
		{"full-jitter", Params{Base: time.Minute, Cap: time.Second}, nil, true},
		{"glide", Params{GLIDE: GLIDE{JitterPercent: 101}}, nil, true},
		{"fixed", Params{Delay: -time.Second}, nil, true},
		{"yolo", Params{}, nil, true},
	}
	for _, tt := range tests {
		got, err := ByName(tt.name, tt.p)
		if tt.wantErr {
			if !errors.Is(err, ErrInvalidConfig) {
				t.Errorf("ByName(%q, %+v) error = %v, want ErrInvalidConfig", tt.name, tt.p, err)
			}
			continue
		}
		if err != nil || got != tt.want {
			t.Errorf("ByName(%q, %+v) = %#v, %v; want %#v", tt.name, tt.p, got, err, tt.want)
		}
	}
	if len(Names()) != 7 {
		t.Errorf("Names() = %v", Names())
	}
}

func TestFixed(t *testing.T) {
	if d := (Fixed{Every: time.Second}).Delay(0, 0, nil); d != 0 {
		t.Errorf("fixed must reconnect at once after a disconnect, got %s", d)
	}
	if d := (Fixed{Every: time.Second}).Delay(3, 0, nil); d != time.Second {
		t.Errorf("Fixed.Delay(3) = %s", d)
	}
	if d := (Fixed{}).Delay(1, 0, nil); d != DefaultFixedDelay {
		t.Errorf("zero Fixed.Delay(1) = %s", d)
	}
}
