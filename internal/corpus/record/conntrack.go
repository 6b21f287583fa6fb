//go:build linux

package main

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"

	"github.com/mdlayher/netlink"
	"github.com/ti-mo/conntrack"
	"golang.org/x/sys/unix"
)

// conntrackOn loads an nftables ruleset with a conntrack expression into
// the sandbox's namespace: conntrack tracks a namespace's traffic only
// once a rule there needs it (a fresh namespace tracks nothing).
func (r *run) conntrackOn(ctx context.Context) error {
	return r.nft(ctx, "table inet sgcorpusct {\n chain in {\n  type filter hook input priority 0;\n  ct state established,related accept\n }\n}\n")
}

// conntrackBallast fills the sandbox namespace's own conntrack table with
// assured UDP flows between addresses that exist nowhere (10.200.0.0/16 →
// 10.201.0.1:53, 600 s timeout) until headroom entries are left below
// nf_conntrack_max: the long-lived flows of a busy host's other traffic,
// which early_drop may not evict.
//
// Why this is safe on a shared machine: the table limit is host-wide, but
// each namespace's entries are counted against it separately (the kernel
// compares the namespace's own count with nf_conntrack_max), so a full
// table here drops nothing in any other namespace; the host-wide limit is
// never written. The entries go with the namespace (and time out after
// 600 s if they did not). Cost: about 300 bytes of kernel memory each.
func (r *run) conntrackBallast(ctx context.Context, headroom int) (int, error) {
	count, err := r.sb.Sysctl("net.netfilter.nf_conntrack_count")
	if err != nil {
		return 0, err
	}
	maxS, err := r.sb.Sysctl("net.netfilter.nf_conntrack_max")
	if err != nil {
		return 0, err
	}
	cur, err1 := strconv.Atoi(strings.TrimSpace(count))
	limit, err2 := strconv.Atoi(strings.TrimSpace(maxS))
	if err1 != nil || err2 != nil || limit <= 0 {
		return 0, fmt.Errorf("conntrack count %q / max %q", count, maxS)
	}
	want := limit - headroom - cur
	if want <= 0 {
		return 0, nil
	}
	// 16 bits of port × up to 254 source addresses.
	if want > 254*60000 {
		return 0, fmt.Errorf("nf_conntrack_max %d is too large to fill here", limit)
	}
	f, err := os.Open(r.sb.NetNS)
	if err != nil {
		return 0, err
	}
	defer f.Close()
	const workers = 4
	var made atomic.Int64
	var wg sync.WaitGroup
	errs := make(chan error, workers)
	for w := 0; w < workers; w++ {
		wg.Add(1)
		go func(w int) {
			defer wg.Done()
			c, err := conntrack.Dial(&netlink.Config{NetNS: int(f.Fd())})
			if err != nil {
				errs <- fmt.Errorf("ctnetlink in %s: %w", r.sb.Name, err)
				return
			}
			defer c.Close()
			dst := netip.AddrFrom4([4]byte{10, 201, 0, 1})
			for i := w; i < want && ctx.Err() == nil; i += workers {
				src := netip.AddrFrom4([4]byte{10, 200, byte(1 + i/60000), 1})
				fl := conntrack.NewFlow(17, conntrack.StatusAssured|conntrack.StatusSeenReply|conntrack.StatusConfirmed,
					src, dst, uint16(1024+i%60000), 53, 600, 0)
				if err := c.Create(fl); err != nil {
					if errors.Is(err, unix.ENOMEM) {
						return // full already (other traffic here): enough
					}
					errs <- fmt.Errorf("create conntrack entry %d: %w", i, err)
					return
				}
				made.Add(1)
			}
		}(w)
	}
	wg.Wait()
	close(errs)
	return int(made.Load()), <-errs
}
