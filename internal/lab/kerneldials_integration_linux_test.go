//go:build linux

package lab

import (
	"context"
	"net/netip"
	"testing"
	"time"
)

// TestIntegrationKernelDials: the kernel counters read inside the server's
// namespace count exactly the connects made there: successful ones as
// ActiveOpens, refused ones as ActiveOpens and AttemptFails; the admin
// connection's dials are subtracted. This is what valkey-glide's figures
// rest on, checked here with dials the test makes and counts itself.
func TestIntegrationKernelDials(t *testing.T) {
	sb := newServer(t, 4096)
	sd, err := newSourceDialer(sb.NetNS, prefetch)
	if err != nil {
		t.Fatal(err)
	}
	defer sd.close()
	dial := withTimeout(sd.from(netip.Addr{}), 2*time.Second)
	snmp, err := openTCPSNMP(sb.NetNS)
	if err != nil {
		t.Fatal(err)
	}
	defer snmp.close()
	rec := newRecorder(1, time.Minute)
	r := &run{cfg: Config{Target: sb.Addr()}, dialer: sd, rec: rec}
	k, err := newKernelDials(snmp, rec, r.adminDials.Load)
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	const ok, refused, admins = 25, 7, 3
	for i := 0; i < ok; i++ {
		c, err := dial(ctx, "tcp", sb.Addr())
		if err != nil {
			t.Fatalf("dial %d: %v", i, err)
		}
		c.Close()
	}
	for i := 0; i < refused; i++ {
		if c, err := dial(ctx, "tcp", "127.0.0.1:1"); err == nil {
			c.Close()
			t.Fatal("a dial to a closed port in the namespace succeeded")
		}
	}
	for i := 0; i < admins; i++ {
		// Each admin connection is one connect: valkey-go opens no other.
		adm := &admin{ep: r.adminEndpoint()}
		if err := adm.ping(ctx); err != nil {
			t.Fatal(err)
		}
		adm.close()
	}
	k.sample()
	if got := rec.dials.Load(); got != ok+refused {
		t.Errorf("kernel counted %d client connects, want %d (%d accepted + %d refused; %d admin subtracted)",
			got, ok+refused, ok, refused, admins)
	}
	if got := rec.dialFails.Load(); got != refused {
		t.Errorf("kernel counted %d failed connects, want %d", got, refused)
	}
	if err := k.failure(); err != nil {
		t.Error(err)
	}
}
