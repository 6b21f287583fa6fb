package lab

import (
	"maps"
	"slices"
	"testing"
)

func TestKnownNodes(t *testing.T) {
	const self = "127.0.0.1:6379"
	for _, tc := range []struct {
		name, view string
		want       []string
	}{
		{"alone", "e7d1 :6379@16379 myself,master - 0 0 0 connected\n", []string{self}},
		{"three, one in handshake, one without address",
			"e7d1 127.0.0.1:6379@16379 myself,master - 0 0 1 connected 0-5460\n" +
				"a1b2 127.0.0.1:7001@17001,node-b master - 0 1700 2 connected 5461-10922\n" +
				"c3d4 127.0.0.1:7002@17002 handshake - 0 0 0 disconnected\n" +
				"f5e6 :0@0 noaddr,master - 0 0 0 disconnected\n",
			[]string{self, "127.0.0.1:7001"}},
		{"garbage", "not a cluster\n\n", nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got := slices.Sorted(maps.Keys(knownNodes(tc.view, self)))
			if !slices.Equal(got, tc.want) {
				t.Errorf("knownNodes = %v, want %v", got, tc.want)
			}
		})
	}
}
