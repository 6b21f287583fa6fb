package agent

import (
	"context"
	"time"

	"github.com/stormguard/stormguard/internal/checklist"
	"github.com/stormguard/stormguard/internal/source"
)

// auditAtOnset runs the kernel part of the checklist when a storm begins
// and records the findings as an event, so the capture (and the
// postmortem) shows the host's configuration at the time. Kernel only:
// principle 1 in docs/design.md, no extra connection or command to Valkey
// during a storm.
func (a *Agent) auditAtOnset(ctx context.Context, t source.Target) {
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	f, err := checklist.Gather(ctx, checklist.Options{NetNS: t.NetNS, Window: time.Second, NoClientList: true})
	if err != nil {
		a.o.Logger.Warn("checklist at storm onset failed", "target", t.Name(), "err", err)
		return
	}
	var notable []checklist.Finding
	for _, fd := range checklist.Evaluate(f) {
		if fd.Severity != checklist.OK {
			notable = append(notable, fd)
		}
	}
	a.event(ctx, ChecklistEvent{Time: time.Now().UTC(), Type: "checklist", Target: t.Name(),
		Reason: "kernel checklist at storm onset", Findings: notable})
}
