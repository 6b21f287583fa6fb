package lab

import (
	"context"
	"fmt"
	"net"
	"strconv"

	"github.com/stormguard/stormguard/internal/sandbox"
)

// MaxHosts is the largest Config.Hosts.
const MaxHosts = sandbox.MaxHosts

// addHosts gives the run's spawned server n client hosts (see
// sandbox.AddHosts), shapes their links, and points the run at Valkey's
// address on that link. Valkey must not be running yet.
func (r *run) addHosts(ctx context.Context, sb *sandbox.Sandbox) error {
	cfg := &r.cfg
	hosts, err := sb.AddHosts(ctx, cfg.Hosts, sandbox.LinkOptions{RTT: cfg.RTT, DelayLine: cfg.forceDelayLine})
	if err != nil {
		return fmt.Errorf("client hosts: %w", err)
	}
	r.rttMethod = sb.RTTMethod()
	for _, h := range hosts {
		if cfg.Loss > 0 {
			if err := linkLoss(h.NetNS, cfg.Loss); err != nil {
				return err
			}
		}
		d, err := newSourceDialer(h.NetNS, max(prefetch/len(hosts), 32))
		if err != nil {
			return err
		}
		r.onClose(d.close)
		r.hostDialers = append(r.hostDialers, d)
		r.hostAddrs = append(r.hostAddrs, h.Addr.String())
		r.hostNetNS = append(r.hostNetNS, h.NetNS)
	}
	cfg.Target = net.JoinHostPort(sb.LinkAddr().String(), strconv.Itoa(sb.Port))
	via := ""
	if r.rttMethod != "" {
		via = " by " + r.rttMethod
	}
	r.progress("%d client hosts %s…%s linked to %s (rtt %s%s, loss %g%%)", len(hosts),
		hosts[0].Addr, hosts[len(hosts)-1].Addr, cfg.Target, cfg.RTT, via, cfg.Loss)
	return nil
}
