package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestRepository keeps the repository's own docs linked right (make test
// runs it): every relative link in README.md and docs/ resolves.
func TestRepository(t *testing.T) {
	broken, err := Check("../..")
	if err != nil {
		t.Fatal(err)
	}
	for _, b := range broken {
		t.Error(b)
	}
}

func TestSlug(t *testing.T) {
	for heading, want := range map[string]string{
		"Watch agent":               "watch-agent",
		"eBPF source (listentrace)": "ebpf-source-listentrace",
		"8c. The learned rate (17:00–18:40 UTC; `AcceptRate` 5,000/s)": "8c-the-learned-rate-17001840-utc-acceptrate-5000s",
		"Cost: CPU and RSS of `stormguard watch`":                      "cost-cpu-and-rss-of-stormguard-watch",
		"Which settings for my fleet? `stormguard backoff --fleet`":    "which-settings-for-my-fleet-stormguard-backoff---fleet",
		"See [corpus.md](corpus.md) — ×2 growth":                       "see-corpusmd--2-growth",
	} {
		if got := Slug(heading); got != want {
			t.Errorf("Slug(%q) = %q, want %q", heading, got, want)
		}
	}
}

// TestCheck: a broken file, a broken anchor, a duplicate heading's
// numbered anchor, links in code left alone.
func TestCheck(t *testing.T) {
	root := t.TempDir()
	write := func(name, text string) {
		p := filepath.Join(root, name)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(text), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	write("README.md", "[ok](docs/a.md#two) [gone](docs/nope.md) [dir](docs)\n[abs](https://example.com/x#y)\n")
	write("docs/a.md", "# One\n\n## Two\n\n## Two\n\n<a id=\"pinned\"></a>\n\n```\n[in code](missing.md)\n## Not a heading\n```\n"+
		"[dup](#two-1) [pinned](#pinned) [bad](#not-a-heading) `[span](missing.md)` [img](img/x.png)\n")
	write("docs/img/x.png", "")
	broken, err := Check(root)
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, b := range broken {
		got = append(got, b.String())
	}
	want := []string{
		"README.md:1: docs/nope.md: no such file",
		"docs/a.md:13: #not-a-heading: no heading or anchor #not-a-heading in docs/a.md",
	}
	if strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Errorf("broken links:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
}
