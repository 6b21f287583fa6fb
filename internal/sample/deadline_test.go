package sample

import (
	"testing"
	"time"
)

func TestMissedDeadline(t *testing.T) {
	for _, tc := range []struct {
		reason string
		want   bool
	}{
		{timeoutReason(400 * time.Millisecond), true},
		{"connect 127.0.0.1:6379: connection refused", false},
		{"TLS handshake: no answer in time", false},
		{"", false},
	} {
		if got := MissedDeadline(tc.reason); got != tc.want {
			t.Errorf("MissedDeadline(%q) = %v, want %v", tc.reason, got, tc.want)
		}
	}
}
