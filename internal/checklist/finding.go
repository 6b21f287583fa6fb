package checklist

import (
	"encoding/json"
	"fmt"
	"strings"
)

// Severity ranks a finding. The zero value is OK.
type Severity int

// Severities in increasing order.
const (
	OK Severity = iota
	Info
	Warning
	Critical
)

var severityNames = [...]string{"ok", "info", "warning", "critical"}

func (s Severity) String() string {
	if s < OK || s > Critical {
		return fmt.Sprintf("severity(%d)", int(s))
	}
	return severityNames[s]
}

// ParseSeverity parses "ok", "info", "warning" or "critical".
func ParseSeverity(s string) (Severity, error) {
	for i, n := range severityNames {
		if strings.EqualFold(s, n) {
			return Severity(i), nil
		}
	}
	return OK, fmt.Errorf("unknown severity %q (want ok, info, warning or critical)", s)
}

// MarshalJSON encodes the severity as its name.
func (s Severity) MarshalJSON() ([]byte, error) { return json.Marshal(s.String()) }

// UnmarshalJSON decodes a severity name.
func (s *Severity) UnmarshalJSON(b []byte) error {
	var n string
	if err := json.Unmarshal(b, &n); err != nil {
		return err
	}
	v, err := ParseSeverity(n)
	if err != nil {
		return err
	}
	*s = v
	return nil
}

// Area groups rules; one file per area.
type Area string

// Areas in report order.
const (
	AreaKernel    Area = "kernel"
	AreaConntrack Area = "conntrack"
	AreaValkey    Area = "valkey"
	AreaHistory   Area = "history"
	AreaNIC       Area = "nic"
	AreaClients   Area = "clients"
)

// Finding is the result of one rule. Its JSON keys are the contract of
// `stormguard check --format json`.
type Finding struct {
	// ID is stable; docs/checklist.md has a section with this anchor.
	ID       string   `json:"id"`
	Severity Severity `json:"severity"`
	Area     Area     `json:"area"`
	Title    string   `json:"title"`
	// Evidence states the actual values the verdict rests on.
	Evidence string `json:"evidence"`
	// Fix is the exact sysctl, config line or command; empty when nothing
	// needs doing.
	Fix string `json:"fix"`
	// Doc links the finding's section in docs/checklist.md.
	Doc string `json:"doc"`
	// Target is the audited Valkey address (with its namespace when it is
	// not stormguard's own), so the findings of several audited servers
	// can be told apart; empty for a kernel-only audit.
	Target string `json:"target,omitempty"`
	// Sysctls are kernel settings this finding recommends (dotted name →
	// value); --write-sysctl collects them. Not part of the JSON.
	Sysctls map[string]string `json:"-"`
}

// DocPath is where each finding's documentation section lives.
const DocPath = "docs/checklist.md"

func docLink(id string) string { return DocPath + "#" + id }

// newFinding fills Area and Doc.
func newFinding(area Area, id string, sev Severity, title, evidence, fix string) Finding {
	return Finding{ID: id, Severity: sev, Area: area, Title: title, Evidence: evidence, Fix: fix, Doc: docLink(id)}
}

// Rule is a pure function of Facts.
type Rule func(f *Facts) []Finding

// Rules returns every rule in report order.
func Rules() []Rule {
	var rs []Rule
	rs = append(rs, kernelRules()...)
	rs = append(rs, conntrackRules()...)
	rs = append(rs, valkeyRules()...)
	rs = append(rs, historyRules()...)
	rs = append(rs, nicRules()...)
	rs = append(rs, clientRules()...)
	return rs
}

// Evaluate runs every rule over f.
func Evaluate(f *Facts) []Finding {
	var out []Finding
	for _, r := range Rules() {
		out = append(out, r(f)...)
	}
	return out
}

// Worst is the highest severity among fs (OK for none).
func Worst(fs []Finding) Severity {
	w := OK
	for _, f := range fs {
		w = max(w, f.Severity)
	}
	return w
}

// Report is the JSON document printed by --format json.
type Report struct {
	Findings []Finding `json:"findings"`
}
