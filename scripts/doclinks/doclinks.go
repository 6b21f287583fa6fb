package main

import (
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"unicode"
)

// Broken is one link that does not resolve.
type Broken struct {
	File   string // the markdown file holding the link, relative to the root
	Line   int
	Target string
	Why    string
}

func (b Broken) String() string {
	return fmt.Sprintf("%s:%d: %s: %s", b.File, b.Line, b.Target, b.Why)
}

var (
	// [text](target) and ![alt](target); the target ends at the first
	// space (a title may follow) or the closing parenthesis.
	linkRE = regexp.MustCompile(`!?\[[^\]]*\]\(([^)\s]+)(?:\s+"[^"]*")?\)`)
	// <a id="x"> / <a name="x">: explicit anchors.
	anchorRE  = regexp.MustCompile(`<a\s+(?:id|name)="([^"]+)"`)
	headingRE = regexp.MustCompile(`^ {0,3}(#{1,6})\s+(.*?)\s*#*\s*$`)
	codeRE    = regexp.MustCompile("`[^`]*`")
	schemeRE  = regexp.MustCompile(`^[a-zA-Z][a-zA-Z0-9+.-]*:`)
)

// Check reads README.md and every .md file under docs/ in root and returns
// the links in them that do not resolve.
func Check(root string) ([]Broken, error) {
	files := []string{"README.md"}
	err := filepath.WalkDir(filepath.Join(root, "docs"), func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if !d.IsDir() && strings.HasSuffix(p, ".md") {
			rel, err := filepath.Rel(root, p)
			if err != nil {
				return fmt.Errorf("relative path of %s: %w", p, err)
			}
			files = append(files, rel)
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("walk docs: %w", err)
	}
	anchors := map[string]map[string]bool{} // file (relative to root) → anchors
	var broken []Broken
	for _, f := range files {
		text, err := os.ReadFile(filepath.Join(root, f))
		if err != nil {
			return nil, fmt.Errorf("read %s: %w", f, err)
		}
		for _, l := range Links(string(text)) {
			if why := resolve(root, f, l.Target, anchors); why != "" {
				broken = append(broken, Broken{File: f, Line: l.Line, Target: l.Target, Why: why})
			}
		}
	}
	return broken, nil
}

// resolve returns why target, linked from file, does not resolve ("" when
// it does). anchors caches the anchors of files already read.
func resolve(root, file, target string, anchors map[string]map[string]bool) string {
	if schemeRE.MatchString(target) || strings.HasPrefix(target, "//") {
		return "" // external: not checked (CI has no network to rely on)
	}
	path, frag, _ := strings.Cut(target, "#")
	dest := file
	if path != "" {
		dest = filepath.Join(filepath.Dir(file), filepath.FromSlash(path))
		if _, err := os.Stat(filepath.Join(root, dest)); err != nil {
			return "no such file"
		}
	}
	if frag == "" || !strings.HasSuffix(dest, ".md") {
		return ""
	}
	set, ok := anchors[dest]
	if !ok {
		text, err := os.ReadFile(filepath.Join(root, dest))
		if err != nil {
			return "unreadable: " + err.Error()
		}
		set = Anchors(string(text))
		anchors[dest] = set
	}
	if !set[frag] {
		return "no heading or anchor #" + frag + " in " + filepath.ToSlash(dest)
	}
	return ""
}

// Link is one link target and the line it is on.
type Link struct {
	Line   int
	Target string
}

// Links returns the link targets of a markdown text outside fenced code
// blocks and code spans.
func Links(text string) []Link {
	var out []Link
	eachProseLine(text, func(i int, line string) {
		for _, m := range linkRE.FindAllStringSubmatch(codeRE.ReplaceAllString(line, ""), -1) {
			out = append(out, Link{Line: i + 1, Target: m[1]})
		}
	})
	return out
}

// eachProseLine calls fn with the index and text of every line of text
// outside fenced code blocks (the fence lines themselves excluded).
func eachProseLine(text string, fn func(i int, line string)) {
	fence := ""
	for i, line := range strings.Split(text, "\n") {
		if f := fenceOf(line); f != "" {
			switch {
			case fence == "":
				fence = f
			case strings.HasPrefix(f, fence):
				fence = ""
			}
			continue
		}
		if fence == "" {
			fn(i, line)
		}
	}
}

// fenceOf returns the fence (``` or ~~~ run) that line opens or closes, or "".
func fenceOf(line string) string {
	t := strings.TrimLeft(line, " ")
	if len(line)-len(t) > 3 {
		return ""
	}
	for _, c := range []string{"`", "~"} {
		n := len(t) - len(strings.TrimLeft(t, c))
		if n >= 3 {
			return strings.Repeat(c, n)
		}
	}
	return ""
}

// Anchors returns the anchors a markdown text defines: GitHub's slug of
// every heading outside code blocks (duplicates numbered -1, -2, …) and
// every <a id|name="…">.
func Anchors(text string) map[string]bool {
	set := map[string]bool{}
	seen := map[string]int{}
	eachProseLine(text, func(_ int, line string) {
		for _, m := range anchorRE.FindAllStringSubmatch(line, -1) {
			set[m[1]] = true
		}
		m := headingRE.FindStringSubmatch(line)
		if m == nil {
			return
		}
		s := Slug(m[2])
		if n := seen[s]; n > 0 {
			set[fmt.Sprintf("%s-%d", s, n)] = true
		} else {
			set[s] = true
		}
		seen[s]++
	})
	return set
}

var (
	inlineLinkRE = regexp.MustCompile(`!?\[([^\]]*)\]\([^)]*\)`)
	tagRE        = regexp.MustCompile(`<[^>]+>`)
)

// Slug is GitHub's anchor for a heading: the rendered text lower-cased,
// everything but letters, marks, digits, connector punctuation, spaces and
// hyphens dropped, spaces turned into hyphens.
func Slug(heading string) string {
	h := inlineLinkRE.ReplaceAllString(heading, "$1")
	h = tagRE.ReplaceAllString(h, "")
	var b strings.Builder
	for _, r := range strings.ToLower(h) {
		switch {
		case r == ' ':
			b.WriteRune('-')
		case r == '-' || unicode.IsLetter(r) || unicode.IsMark(r) || unicode.IsDigit(r) || unicode.In(r, unicode.Pc):
			b.WriteRune(r)
		}
	}
	return b.String()
}
