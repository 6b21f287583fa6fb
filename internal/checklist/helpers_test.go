package checklist

import (
	"strings"
	"testing"
	"time"
)

// ruleCase is one table row: facts in, the finding expected out.
type ruleCase struct {
	name  string
	facts Facts
	id    string
	// none expects no finding with id.
	none bool
	sev  Severity
	// evidence and fix list substrings that must appear.
	evidence []string
	fix      []string
	sysctls  map[string]string
}

func runRuleCases(t *testing.T, rule Rule, cases []ruleCase) {
	t.Helper()
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			f := tc.facts
			got := rule(&f)
			var fd *Finding
			for i := range got {
				if got[i].ID == tc.id {
					fd = &got[i]
				}
			}
			if tc.none {
				if fd != nil {
					t.Fatalf("want no %s, got %s: %s", tc.id, fd.Severity, fd.Evidence)
				}
				return
			}
			if fd == nil {
				t.Fatalf("no finding %s in %+v", tc.id, got)
			}
			if fd.Severity != tc.sev {
				t.Errorf("severity %s, want %s (evidence %q)", fd.Severity, tc.sev, fd.Evidence)
			}
			for _, s := range tc.evidence {
				if !strings.Contains(fd.Evidence, s) {
					t.Errorf("evidence %q lacks %q", fd.Evidence, s)
				}
			}
			for _, s := range tc.fix {
				if !strings.Contains(fd.Fix, s) {
					t.Errorf("fix %q lacks %q", fd.Fix, s)
				}
			}
			if fd.Severity >= Warning && fd.Fix == "" {
				t.Errorf("%s finding without a fix", fd.Severity)
			}
			if fd.Doc != DocPath+"#"+tc.id || fd.Title == "" || fd.Evidence == "" {
				t.Errorf("incomplete finding %+v", fd)
			}
			for k, v := range tc.sysctls {
				if fd.Sysctls[k] != v {
					t.Errorf("sysctl %s = %q, want %q", k, fd.Sysctls[k], v)
				}
			}
		})
	}
}

func sysctls(kv ...string) map[string]string {
	m := map[string]string{}
	for i := 0; i+1 < len(kv); i += 2 {
		m[kv[i]] = kv[i+1]
	}
	return m
}

func u64(v uint64) *uint64 { return &v }

func valkeyFacts(config, info map[string]string) *ValkeyFacts {
	if config == nil {
		config = map[string]string{}
	}
	if info == nil {
		info = map[string]string{}
	}
	return &ValkeyFacts{Addr: "valkey://127.0.0.1:6379", Config: config, Info: info}
}

const second = time.Second
