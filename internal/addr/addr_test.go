package addr

import (
	"errors"
	"strings"
	"testing"
)

func TestParse(t *testing.T) {
	tests := []struct {
		in   string
		want Addr
	}{
		{"127.0.0.1:6379", Addr{Host: "127.0.0.1", Port: 6379}},
		{"localhost:7000", Addr{Host: "localhost", Port: 7000}},
		{"[::1]:6380", Addr{Host: "::1", Port: 6380}},
		{"valkey://10.0.0.1:6379", Addr{Host: "10.0.0.1", Port: 6379}},
		{"valkey://10.0.0.1", Addr{Host: "10.0.0.1", Port: 6379}},
		{"valkey://u:p@h:1/3", Addr{Host: "h", Port: 1, User: "u", Password: "p", DB: 3}},
		{"valkey://secret@h:1", Addr{Host: "h", Port: 1, Password: "secret"}},
		{"valkey://default:pw@h:1", Addr{Host: "h", Port: 1, Password: "pw"}},
		{"valkeys://h:6380", Addr{Host: "h", Port: 6380, TLS: true}},
		{"rediss://h:6380?insecure=1", Addr{Host: "h", Port: 6380, TLS: true, TLSInsecure: true}},
		{"redis://h:6380", Addr{Host: "h", Port: 6380}},
	}
	for _, tt := range tests {
		got, err := Parse(tt.in)
		if err != nil {
			t.Errorf("Parse(%q): %v", tt.in, err)
			continue
		}
		if got != tt.want {
			t.Errorf("Parse(%q) = %+v, want %+v", tt.in, got, tt.want)
		}
	}
}

func TestParseErrors(t *testing.T) {
	for _, in := range []string{"", "nohost", "h:0", "h:99999", ":6379", "http://h:1", "valkey://u:topsecret@h:1/x", "valkey://u:topsecret@h:port"} {
		_, err := Parse(in)
		if err == nil {
			t.Errorf("Parse(%q): want error", in)
			continue
		}
		if !errors.Is(err, ErrBadAddress) {
			t.Errorf("Parse(%q): error %v does not wrap ErrBadAddress", in, err)
		}
		if strings.Contains(err.Error(), "topsecret") {
			t.Errorf("Parse(%q): error leaks the password: %v", in, err)
		}
		if strings.Contains(err.Error(), "\n") {
			t.Errorf("Parse(%q): error is not one line: %q", in, err)
		}
	}
}

func TestStringRedacts(t *testing.T) {
	a, err := Parse("valkeys://alice:topsecret@h:6380/2")
	if err != nil {
		t.Fatal(err)
	}
	if s := a.String(); strings.Contains(s, "topsecret") || s != "valkeys://alice:***@h:6380/2" {
		t.Errorf("String() = %q", s)
	}
}

func TestApplyPassword(t *testing.T) {
	a := Addr{Host: "h", Port: 1}
	if err := a.ApplyPassword("", func(string) string { return "envpw" }); err != nil || a.Password != "envpw" {
		t.Fatalf("env: %v %q", err, a.Password)
	}
	b := Addr{Host: "h", Port: 1, Password: "inurl"}
	_ = b.ApplyPassword("", func(string) string { return "envpw" })
	if b.Password != "inurl" {
		t.Errorf("URL password should win, got %q", b.Password)
	}
	c := Addr{}
	if err := c.ApplyPassword("/nonexistent/pw", nil); err == nil {
		t.Error("want error for missing password file")
	}
}

func FuzzParse(f *testing.F) {
	for _, s := range []string{"127.0.0.1:6379", "valkey://u:p@h:1/3", "valkeys://h", "[::1]:1", "x://", "valkey://@:/"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		a, err := Parse(s)
		if err != nil {
			return
		}
		if a.Port < 1 || a.Port > 65535 || a.Host == "" {
			t.Fatalf("Parse(%q) accepted invalid %+v", s, a)
		}
		if a.Password != "" && strings.Contains(a.String(), ":"+a.Password+"@") {
			t.Fatalf("String leaks password for %q", s)
		}
	})
}
