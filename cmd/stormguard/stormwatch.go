package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"time"

	"github.com/stormguard/stormguard/internal/agent"
	"github.com/stormguard/stormguard/internal/defuse"
	"github.com/stormguard/stormguard/internal/lab"
	"github.com/stormguard/stormguard/internal/serve"
	"github.com/stormguard/stormguard/internal/source"
)

// stormWatch returns the lab.WatchFunc of `storm --defuse auto`: the watch
// agent, in this process, with watch's defaults (500ms interval, eBPF on)
// and `--defuse auto` with its default actions (ratelimit-syn, 20/s per
// source, and the admission limit ratelimit-global sized from what Valkey
// completes; TTL 1m, at most 10m), on the run's server. Its defuse state file
// lives in a private directory removed afterwards; its nftables rules live
// in the server's namespace, which the run removes. Warnings go to log
// (the progress writer, or nowhere).
func stormWatch(log io.Writer) lab.WatchFunc {
	return func(ctx context.Context, s lab.Server) (func() []lab.AgentEvent, error) {
		dir, err := os.MkdirTemp("", "stormguard-lab-agent-")
		if err != nil {
			return nil, fmt.Errorf("agent state directory: %w", err)
		}
		if log == nil {
			log = io.Discard
		}
		logger := slog.New(slog.NewTextHandler(log, &slog.HandlerOptions{Level: slog.LevelWarn}))
		interval := 500 * time.Millisecond
		statePath := filepath.Join(dir, "defuse.json")
		hub := serve.NewHub(source.Names(), int(10*time.Minute/interval), 1000)
		ag, err := agent.New(agent.Options{
			Targets:    []source.Target{{Addr: s.Addr, NetNS: s.NetNS}},
			Interval:   interval,
			Version:    version,
			Hub:        hub,
			AutoDefuse: &agent.AutoDefuse{StatePath: statePath},
			Logger:     logger,
		})
		if err != nil {
			os.RemoveAll(dir)
			return nil, err
		}
		actx, cancel := context.WithCancel(context.WithoutCancel(ctx))
		done := make(chan struct{})
		go func() {
			defer close(done)
			_ = ag.Run(actx)
		}()
		return func() []lab.AgentEvent {
			// A clean stop reverts whatever auto mode armed; an arming
			// that raced the stop is reverted here (which also ends its
			// scheduled restore process) before the state goes.
			cancel()
			<-done
			m := &defuse.Manager{StatePath: statePath, NetNS: s.NetNS, Valkey: s.Addr, Logger: logger}
			rctx, rcancel := context.WithTimeout(context.Background(), 10*time.Second)
			if list, err := m.List(rctx); err == nil {
				for _, mt := range list {
					if _, err := m.Revert(rctx, mt.ID); err != nil {
						logger.Warn("storm --defuse auto: revert after the run", "id", mt.ID, "err", err)
					}
				}
			}
			rcancel()
			os.RemoveAll(dir)
			var out []lab.AgentEvent
			for _, raw := range hub.Events() {
				var head struct {
					Time time.Time `json:"time"`
				}
				if json.Unmarshal(raw, &head) != nil {
					continue
				}
				out = append(out, lab.AgentEvent{Time: head.Time, Event: raw})
			}
			return out
		}, nil
	}
}
