package lab

import (
	"context"
	"fmt"
	"syscall"
)

// A scenario disrupts the server once the fleet is warm.
type scenario interface {
	// check reports what the scenario cannot run with in cfg (nil: fine).
	check(cfg Config) error
	// traits describes the scenario to the run.
	traits() scenarioTraits
	// disrupt disrupts the server. It calls mark once, at the moment the
	// disruption counts from (t0; if it returns without calling mark, t0
	// is when it returned), and returns when the disruption is over.
	disrupt(ctx context.Context, r *run, mark func()) error
}

type scenarioTraits struct {
	// churn: no disruption; every client reconnects after every PING
	// and nothing recovers.
	churn bool
	// restarts: the server restarts, so its counters start again.
	restarts bool
}

func init() {
	scenarios.register(1, "kill", killScenario{})
	scenarios.register(2, "restart", restartScenario{})
	scenarios.register(3, "blip", blipScenario{})
	scenarios.register(4, "churn", churnScenario{})
	scenarios.register(5, "slow", slowScenario{})
	scenarios.register(6, "failover", failoverScenario{})
}

// killScenario: CLIENT KILL TYPE normal SKIPME yes over the admin
// connection. The disruption counts from when the command is sent:
// killing thousands of clients takes Valkey a while (about a second for
// 6,000 on a loaded 2-core machine), and clients see their connection
// closed, and redial, while it runs.
type killScenario struct{}

func (killScenario) check(Config) error     { return nil }
func (killScenario) traits() scenarioTraits { return scenarioTraits{} }
func (killScenario) disrupt(ctx context.Context, r *run, mark func()) error {
	mark()
	n, err := r.adm.killNormal(ctx)
	if err != nil {
		return err
	}
	r.res.KilledClients = &n
	return nil
}

// restartScenario restarts the server: the lab's own (Spawn) or through
// Config.Restart.
type restartScenario struct{}

func (restartScenario) check(c Config) error {
	if c.Restart == nil && c.Spawn == nil {
		return bad("Scenario", "the restart {Scenario} needs {Spawn} or {Restart}")
	}
	return nil
}
func (restartScenario) traits() scenarioTraits { return scenarioTraits{restarts: true} }
func (restartScenario) disrupt(ctx context.Context, r *run, mark func()) error {
	return r.restart(ctx, mark)
}

// blipScenario drops every packet to the port for Config.Blip.
type blipScenario struct{}

func (blipScenario) check(c Config) error {
	if !c.netnsKnown() {
		return bad("Scenario", "the blip {Scenario} changes the firewall of the server's network namespace: give {NetNS} or {Spawn}")
	}
	return nil
}
func (blipScenario) traits() scenarioTraits { return scenarioTraits{} }
func (blipScenario) disrupt(ctx context.Context, r *run, mark func()) error {
	port, err := portOf(r.cfg.Target)
	if err != nil {
		return err
	}
	remove, err := blackhole(ctx, r.cfg.NetNS, port)
	if err != nil {
		return err
	}
	mark()
	sleepCtx(ctx, r.cfg.Blip)
	return remove()
}

// churnScenario: no disruption; clients reconnect per PING, like
// valkey-benchmark -k 0, to measure the generator itself.
type churnScenario struct{}

func (churnScenario) check(c Config) error {
	if c.Strategy != "immediate" {
		return bad("Scenario", "the churn {Scenario} measures the generator itself and runs only with {Strategy} immediate")
	}
	return nil
}
func (churnScenario) traits() scenarioTraits                      { return scenarioTraits{churn: true} }
func (churnScenario) disrupt(context.Context, *run, func()) error { return nil }

// slowScenario stalls the server for Config.Stall while the clients keep
// their timeouts: the lab's own server is frozen with SIGSTOP (and thawed
// with SIGCONT); an outside one runs DEBUG SLEEP over the admin connection
// (which needs enable-debug-command).
type slowScenario struct{}

func (slowScenario) check(Config) error     { return nil }
func (slowScenario) traits() scenarioTraits { return scenarioTraits{} }
func (slowScenario) disrupt(ctx context.Context, r *run, mark func()) error {
	if r.sb != nil {
		if err := r.sb.Signal(syscall.SIGSTOP); err != nil {
			return fmt.Errorf("stall: %w", err)
		}
		mark()
		sleepCtx(ctx, r.cfg.Stall)
		if err := r.sb.Signal(syscall.SIGCONT); err != nil {
			return fmt.Errorf("resume: %w", err)
		}
		return nil
	}
	mark()
	if err := r.adm.debugSleep(ctx, r.cfg.Stall); err != nil {
		return fmt.Errorf("DEBUG SLEEP (needs enable-debug-command on the server): %w", err)
	}
	return nil
}
