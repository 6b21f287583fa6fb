// Package deploy holds deployment files; its tests keep the Prometheus rules
// valid, unit-tested and in step with the metrics the agent exports.
package deploy

import (
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/stormguard/stormguard/internal/sandbox/sandboxtest"
	"github.com/stormguard/stormguard/internal/serve"
)

const rules = "prometheus/stormguard-rules.yml"

func promtool(t *testing.T) string {
	p, err := exec.LookPath("promtool")
	if err != nil {
		sandboxtest.SkipOrFail(t, "promtool not found (Debian package prometheus)")
	}
	return p
}

func TestPromtoolCheckRules(t *testing.T) {
	out, err := exec.Command(promtool(t), "check", "rules", rules).CombinedOutput()
	if err != nil {
		t.Fatalf("promtool check rules: %v\n%s", err, out)
	}
}

func TestPromtoolTestRules(t *testing.T) {
	tests, err := filepath.Glob("prometheus/*.test.yml")
	if err != nil || len(tests) == 0 {
		t.Fatalf("no rule tests found: %v", err)
	}
	out, err := exec.Command(promtool(t), append([]string{"test", "rules"}, tests...)...).CombinedOutput()
	if err != nil {
		t.Fatalf("promtool test rules: %v\n%s", err, out)
	}
}

// TestRulesUseExportedMetrics catches a rule or dashboard that names a
// metric the agent does not export (a renamed metric would silently make
// an alert never fire).
func TestRulesUseExportedMetrics(t *testing.T) {
	ref := serve.MetricsMarkdown()
	re := regexp.MustCompile("stormguard_[a-z0-9_]+")
	files := []string{rules}
	if _, err := os.Stat("grafana/stormguard.json"); err == nil {
		files = append(files, "grafana/stormguard.json")
	}
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		for _, name := range re.FindAllString(string(b), -1) {
			// A histogram's series are its name plus _bucket, _sum, _count.
			base := name
			for _, suf := range []string{"_bucket", "_sum", "_count"} {
				if b, ok := strings.CutSuffix(name, suf); ok && strings.Contains(ref, "`"+b+"`") {
					base = b
				}
			}
			if !strings.Contains(ref, "`"+base+"`") {
				t.Errorf("%s uses %s, which the agent does not export", f, name)
			}
		}
	}
}
