package lab

import (
	"context"
	"errors"
	"net"
	"net/netip"
	"strings"
	"testing"

	"github.com/stormguard/stormguard/internal/sandbox/sandboxtest"
)

func TestSourceAddr(t *testing.T) {
	tests := []struct {
		k    int
		want string
	}{
		{0, "127.0.0.1"},
		{1, "127.0.0.2"},
		{254, "127.0.0.255"},
		{255, "127.0.1.0"},
		{65535, "127.1.0.0"},
		{maxSourceAddrs, "127.0.0.1"}, // wraps: never leaves 127.0.0.0/8
	}
	for _, tt := range tests {
		if got := sourceAddr(tt.k).String(); got != tt.want {
			t.Errorf("sourceAddr(%d) = %s, want %s", tt.k, got, tt.want)
		}
	}
	for k := 0; k < maxSourceAddrs; k += 4093 {
		if a := sourceAddr(k); !a.IsLoopback() || !a.Is4() {
			t.Fatalf("sourceAddr(%d) = %s: not IPv4 loopback", k, a)
		}
	}
}

func TestSourceCount(t *testing.T) {
	tests := []struct {
		name      string
		target    string
		sources   int
		instances int
		want      int
		wantErr   bool
	}{
		{"loopback: one per instance", "127.0.0.1:6379", 0, 300, 300, false},
		{"loopback: asked for fewer", "127.0.0.1:6379", 16, 300, 16, false},
		{"loopback: more than instances", "127.0.0.1:6379", 500, 300, 300, false},
		{"loopback: one for all", "127.0.0.1:6379", 1, 300, 1, false},
		{"other loopback address", "127.0.0.53:6379", 0, 10, 10, false},
		{"mapped loopback", "[::ffff:127.0.0.1]:6379", 0, 10, 10, false},
		{"ipv6 loopback has one address", "[::1]:6379", 0, 10, 1, false},
		{"remote: kernel's choice", "10.0.0.5:6379", 0, 10, 1, false},
		{"remote: one is fine", "10.0.0.5:6379", 1, 10, 1, false},
		{"remote: more is an error", "10.0.0.5:6379", 8, 10, 0, true},
		{"bad address", "nonsense", 0, 10, 0, true},
		{"valkey-glide dials itself", "127.0.0.1:6379", 0, 10, 1, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := Config{Target: tt.target, SourceAddrs: tt.sources, Instances: tt.instances, Strategy: "immediate"}
			ownSource := strings.HasPrefix(tt.name, "valkey-glide")
			got, err := sourceCount(context.Background(), c, ownSource)
			if (err != nil) != tt.wantErr {
				t.Fatalf("err = %v, wantErr %v", err, tt.wantErr)
			}
			if tt.wantErr && tt.sources > 1 && !errors.Is(err, ErrConfig) {
				t.Errorf("error %v does not wrap ErrConfig (exit 2)", err)
			}
			if got != tt.want {
				t.Errorf("got %d source addresses, want %d", got, tt.want)
			}
		})
	}
}

// TestDialFromSource: a connection made in the current namespace from a
// chosen loopback address arrives from that address (real kernel, no root).
func TestDialFromSource(t *testing.T) {
	ln, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		sandboxtest.SkipOrFail(t, "no IPv4 loopback: "+err.Error())
	}
	defer ln.Close()
	d, err := newSourceDialer("", prefetch)
	if err != nil {
		t.Fatal(err)
	}
	defer d.close()
	for _, src := range []netip.Addr{sourceAddr(6), sourceAddr(300), {}} {
		c, err := d.from(src)(context.Background(), "tcp", ln.Addr().String())
		if err != nil {
			t.Fatalf("dial from %v: %v", src, err)
		}
		s, err := ln.Accept()
		if err != nil {
			t.Fatal(err)
		}
		got := s.RemoteAddr().(*net.TCPAddr).AddrPort().Addr()
		want := src
		if !src.IsValid() {
			want = netip.MustParseAddr("127.0.0.1")
		}
		if got != want {
			t.Errorf("connection from %v arrived from %v", want, got)
		}
		s.Close()
		c.Close()
	}
}
