package main

import (
	"context"
	"net"
	"testing"
	"time"

	"github.com/stormguard/stormguard/internal/netns"
	"github.com/stormguard/stormguard/internal/sandbox"
	"github.com/stormguard/stormguard/internal/sandbox/sandboxtest"
)

// TestIntegrationDelayLine: a TCP handshake across the delay line takes
// at least one round trip of 2 × delay (the relay holds every packet), and
// data flows both ways in order.
func TestIntegrationDelayLine(t *testing.T) {
	sandboxtest.Require(t)
	sb := sandboxtest.New(t, sandbox.Options{NoValkey: true})
	r := &run{sb: sb}
	ctx := context.Background()
	cns, cleanup, err := r.delayLine(ctx, 20*time.Millisecond)
	if err != nil {
		t.Fatal(err)
	}
	defer cleanup()
	var ln net.Listener
	if err := netns.Do(sb.NetNS, func() (err error) { ln, err = net.Listen("tcp", "10.251.0.1:0"); return err }); err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() { defer c.Close(); buf := make([]byte, 64); n, _ := c.Read(buf); _, _ = c.Write(buf[:n]) }()
		}
	}()
	d := dialer{ns: cns, addr: ln.Addr().String(), timeout: 5 * time.Second}
	start := time.Now()
	c, err := d.dial(ctx)
	if err != nil {
		t.Fatalf("dial across the delay line: %v", err)
	}
	defer c.Close()
	if rtt := time.Since(start); rtt < 40*time.Millisecond {
		t.Errorf("TCP handshake took %v; want at least 40 ms (2 × 20 ms)", rtt)
	}
	start = time.Now()
	if _, err := c.Write([]byte("hello")); err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 5)
	_ = c.SetReadDeadline(time.Now().Add(5 * time.Second))
	if _, err := c.Read(buf); err != nil || string(buf) != "hello" {
		t.Fatalf("echo across the delay line: %q %v", buf, err)
	}
	if rtt := time.Since(start); rtt < 40*time.Millisecond {
		t.Errorf("echo took %v; want at least 40 ms", rtt)
	}
}
