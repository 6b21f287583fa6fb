package replay

import (
	"bytes"
	"errors"
	"fmt"
	"math"
	"os"
	"reflect"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"time"
	"unicode"

	"go.yaml.in/yaml/v3"

	"github.com/stormguard/stormguard/internal/detect"
)

// maxConfig bounds a config file; the real ones are a few hundred bytes.
const maxConfig = 1 << 20

// LoadConfig reads a detector configuration file: a YAML (or JSON, which
// is YAML) mapping whose keys are detect.Config's fields in snake_case
// (new_conn_floor, calm_quiet, …). Durations are strings ("5s", "250ms").
// Missing keys keep their defaults; unknown keys, wrong types and values
// detect.Config.Validate rejects are errors naming the file and line.
func LoadConfig(path string) (detect.Config, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return detect.Config{}, fmt.Errorf("read config: %w", err)
	}
	if len(b) > maxConfig {
		return detect.Config{}, fmt.Errorf("config %s: larger than %d bytes", path, maxConfig)
	}
	return ParseConfig(b, path)
}

// ParseConfig parses config file contents; name is used in errors.
func ParseConfig(b []byte, name string) (detect.Config, error) {
	var cfg detect.Config
	if len(bytes.TrimSpace(b)) == 0 {
		return cfg, nil // an empty file: all defaults
	}
	var doc yaml.Node
	if err := yaml.Unmarshal(b, &doc); err != nil {
		return cfg, fmt.Errorf("config %s: %s", name, strings.TrimPrefix(err.Error(), "yaml: "))
	}
	if doc.Kind == 0 || len(doc.Content) == 0 {
		return cfg, nil // comments only
	}
	root := doc.Content[0]
	if root.Kind != yaml.MappingNode {
		return cfg, fmt.Errorf("config %s line %d: want a mapping of detector settings (key: value)", name, root.Line)
	}
	fields := ConfigKeys()
	v := reflect.ValueOf(&cfg).Elem()
	seen := map[string]bool{}
	for i := 0; i+1 < len(root.Content); i += 2 {
		k, val := root.Content[i], root.Content[i+1]
		idx, ok := fields[k.Value]
		if !ok {
			return cfg, fmt.Errorf("config %s line %d: unknown key %q (known: %s)", name, k.Line, k.Value, strings.Join(sortedKeys(fields), ", "))
		}
		if seen[k.Value] {
			return cfg, fmt.Errorf("config %s line %d: key %q given twice", name, k.Line, k.Value)
		}
		seen[k.Value] = true
		if err := setField(v.Field(idx), val); err != nil {
			return cfg, fmt.Errorf("config %s line %d: %s: %w", name, val.Line, k.Value, err)
		}
	}
	if err := cfg.Validate(); err != nil {
		return cfg, fmt.Errorf("config %s: %s", name, keyNames(err.Error()))
	}
	return cfg, nil
}

// keyNames writes the Go field names in a detect.Config.Validate message
// as the file's keys (AcceptHighOccupancy → accept_high_occupancy): the
// person reading it wrote the keys.
func keyNames(msg string) string {
	t := reflect.TypeOf(detect.Config{})
	return goName.ReplaceAllStringFunc(msg, func(w string) string {
		if f, ok := t.FieldByName(w); ok && f.IsExported() {
			return snake(w)
		}
		return w
	})
}

var goName = regexp.MustCompile(`\b[A-Z][A-Za-z0-9]*\b`)

var durationType = reflect.TypeOf(time.Duration(0))

// ConfigKeys maps each settable key to its detect.Config field index.
// Target is not settable (a recording names its own targets).
func ConfigKeys() map[string]int {
	t := reflect.TypeOf(detect.Config{})
	out := map[string]int{}
	for i := 0; i < t.NumField(); i++ {
		f := t.Field(i)
		if !f.IsExported() || f.Name == "Target" {
			continue
		}
		switch f.Type.Kind() {
		case reflect.Float64, reflect.Int, reflect.Int64, reflect.Uint64, reflect.Bool, reflect.String:
			out[snake(f.Name)] = i
		}
	}
	return out
}

func sortedKeys(m map[string]int) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

func setField(f reflect.Value, n *yaml.Node) error {
	if n.Kind != yaml.ScalarNode {
		return errors.New("want a single value")
	}
	s := n.Value
	if f.Type() == durationType {
		d, err := time.ParseDuration(s)
		if err != nil {
			return fmt.Errorf("want a duration such as \"5s\" or \"250ms\", got %q", s)
		}
		if d < 0 {
			return fmt.Errorf("must not be negative, got %s", s)
		}
		f.SetInt(int64(d))
		return nil
	}
	switch f.Kind() {
	case reflect.Float64:
		x, err := strconv.ParseFloat(s, 64)
		if err != nil || math.IsNaN(x) || math.IsInf(x, 0) {
			return fmt.Errorf("want a number, got %q", s)
		}
		f.SetFloat(x)
	case reflect.Int, reflect.Int64:
		x, err := strconv.ParseInt(s, 10, 64)
		if err != nil {
			return fmt.Errorf("want an integer, got %q", s)
		}
		f.SetInt(x)
	case reflect.Uint64:
		x, err := strconv.ParseUint(s, 10, 64)
		if err != nil {
			return fmt.Errorf("want a non-negative integer, got %q", s)
		}
		f.SetUint(x)
	case reflect.Bool:
		x, err := strconv.ParseBool(s)
		if err != nil {
			return fmt.Errorf("want true or false, got %q", s)
		}
		f.SetBool(x)
	case reflect.String:
		f.SetString(s)
	}
	return nil
}

// snake turns a Go field name into its config key: NewConnFloor →
// new_conn_floor, PingFloorMS → ping_floor_ms.
func snake(s string) string {
	r := []rune(s)
	var b strings.Builder
	for i, c := range r {
		if unicode.IsUpper(c) {
			prevLower := i > 0 && (unicode.IsLower(r[i-1]) || unicode.IsDigit(r[i-1]))
			nextLower := i > 0 && i+1 < len(r) && unicode.IsLower(r[i+1]) && unicode.IsUpper(r[i-1])
			if prevLower || nextLower {
				b.WriteByte('_')
			}
			b.WriteRune(unicode.ToLower(c))
			continue
		}
		b.WriteRune(c)
	}
	return b.String()
}
