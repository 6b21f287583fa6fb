package agent

import (
	"time"

	"github.com/stormguard/stormguard/internal/checklist"
	"github.com/stormguard/stormguard/internal/defuse"
)

// The non-state events the agent writes to --events, the journal and the
// hub's event stream. Their JSON is part of the interface contract: the
// fields are declared in key order (the order the map-based encoding used
// to give) and only netns is ever omitted (removed targets have none).
// events_test.go pins the bytes.

// event is one non-state event; the accessors are what the log line and
// the journal need.
type event interface {
	eventType() string
	eventTarget() string
	eventTime() time.Time
	eventAction() string
}

// TargetEvent says a target was added (discovered) or removed.
type TargetEvent struct {
	Action string `json:"action"`
	// NetNS is set on "added" only; a pointer keeps an empty path in the
	// output there while "removed" carries no key at all.
	NetNS  *string   `json:"netns,omitempty"`
	Reason string    `json:"reason"`
	Target string    `json:"target"`
	Time   time.Time `json:"time"`
	Type   string    `json:"type"` // "target"
}

// ChecklistEvent carries the kernel checklist's notable findings at storm
// onset.
type ChecklistEvent struct {
	Findings []checklist.Finding `json:"findings"`
	Reason   string              `json:"reason"`
	Target   string              `json:"target"`
	Time     time.Time           `json:"time"`
	Type     string              `json:"type"` // "checklist"
}

// DefuseEvent records auto mode arming, reverting or failing a mitigation.
type DefuseEvent struct {
	Action     string            `json:"action"`
	Mitigation defuse.Mitigation `json:"mitigation"`
	Reason     string            `json:"reason"`
	Target     string            `json:"target"`
	Time       time.Time         `json:"time"`
	Type       string            `json:"type"` // "defuse"
}

func (e TargetEvent) eventType() string       { return e.Type }
func (e TargetEvent) eventTarget() string     { return e.Target }
func (e TargetEvent) eventTime() time.Time    { return e.Time }
func (e TargetEvent) eventAction() string     { return e.Action }
func (e ChecklistEvent) eventType() string    { return e.Type }
func (e ChecklistEvent) eventTarget() string  { return e.Target }
func (e ChecklistEvent) eventTime() time.Time { return e.Time }
func (e ChecklistEvent) eventAction() string  { return "" }
func (e DefuseEvent) eventType() string       { return e.Type }
func (e DefuseEvent) eventTarget() string     { return e.Target }
func (e DefuseEvent) eventTime() time.Time    { return e.Time }
func (e DefuseEvent) eventAction() string     { return e.Action }
