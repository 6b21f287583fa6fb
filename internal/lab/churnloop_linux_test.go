//go:build linux

package lab

import "testing"

func TestPongReply(t *testing.T) {
	for _, tt := range []struct {
		in         string
		full, done bool
		bad        bool
	}{
		{"", false, false, false},
		{"+PO", false, false, false},
		{"+PONG\r", false, false, false},
		{"+PONG\r\n", false, true, false},
		{"-ERR max number of clients reached\r\n", false, true, true},
		{"-ERR max number of clients rea", true, true, true},
		{"+PONGX\r\n", false, true, true},
	} {
		done, err := pongReply([]byte(tt.in), tt.full)
		if done != tt.done || (err != nil) != tt.bad {
			t.Errorf("pongReply(%q, %v) = %v, %v", tt.in, tt.full, done, err)
		}
	}
}
