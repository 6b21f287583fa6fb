package lab

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/stormguard/stormguard/backoff"
)

func TestValidate(t *testing.T) {
	ok := Config{Target: "127.0.0.1:6379", Clients: 10, Strategy: "immediate", Scenario: "kill"}
	restart := func(context.Context, func()) error { return nil }
	tests := []struct {
		name string
		mod  func(*Config)
		want string // substring of the error; "" = valid
	}{
		{"valid", func(*Config) {}, ""},
		{"no target", func(c *Config) { c.Target = "" }, "no target"},
		{"zero clients", func(c *Config) { c.Clients = 0 }, "--clients"},
		{"negative clients", func(c *Config) { c.Clients = -5 }, "--clients"},
		{"negative instances", func(c *Config) { c.Instances = -1 }, "--instances"},
		{"more instances than clients", func(c *Config) { c.Instances = 11 }, "exceeds"},
		{"unknown strategy", func(c *Config) { c.Strategy = "yolo" }, "unknown strategy"},
		{"negative source addresses", func(c *Config) { c.SourceAddrs = -1 }, "--source-addrs"},
		{"too many source addresses", func(c *Config) { c.SourceAddrs = maxSourceAddrs + 1 }, "--source-addrs"},
		{"unknown scenario", func(c *Config) { c.Scenario = "flood" }, "unknown scenario"},
		{"churn needs immediate", func(c *Config) { c.Scenario, c.Strategy = "churn", "glide" }, "churn"},
		{"restart needs a hook", func(c *Config) { c.Scenario = "restart" }, "--spawn or --restart-cmd"},
		{"restart with hook", func(c *Config) { c.Scenario, c.Restart = "restart", restart }, ""},
		{"blip needs netns", func(c *Config) { c.Scenario = "blip" }, "--netns"},
		{"negative period", func(c *Config) { c.Period = -time.Second }, "--period"},
		{"negative blip", func(c *Config) { c.Blip = -time.Second }, "--blip"},
		{"glide jitter over 100", func(c *Config) { c.Strategy, c.Policy.JitterPercent = "glide", 101 }, "jitter"},
		{"jitter base over cap", func(c *Config) {
			c.Strategy, c.Policy.Base, c.Policy.Cap = "full-jitter", time.Minute, time.Second
		}, "exceeds cap"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := ok
			tt.mod(&c)
			err := c.withDefaults().Validate()
			if tt.want == "" {
				if err != nil {
					t.Fatalf("unexpected error %v", err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tt.want) || !errors.Is(err, ErrConfig) {
				t.Fatalf("err = %v, want ErrConfig containing %q", err, tt.want)
			}
		})
	}
}

func TestPolicy(t *testing.T) {
	tests := []struct {
		name string
		c    Config
		want backoff.Policy
	}{
		{"immediate", Config{Strategy: "immediate"}, backoff.Immediate{}},
		{"stormguard paces in its dialer", Config{Strategy: "stormguard"}, backoff.Immediate{}},
		{"fixed default", Config{Strategy: "fixed"}, fixed{100 * time.Millisecond}},
		{"glide defaults", Config{Strategy: "glide"}, backoff.DefaultGLIDE()},
		{"glide explicit zero jitter kept", Config{Strategy: "glide", Policy: PolicyParams{GlideSet: map[string]bool{"jitter-percent": true}}},
			backoff.GLIDE{Retries: 5, Factor: 100, ExponentBase: 2, JitterPercent: 0}},
		{"decorrelated", Config{Strategy: "decorrelated", Policy: PolicyParams{Base: time.Second, Cap: time.Minute}},
			backoff.DecorrelatedJitter{Base: time.Second, Cap: time.Minute}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := tt.c.policy()
			if err != nil || got != tt.want {
				t.Fatalf("got %#v, %v; want %#v", got, err, tt.want)
			}
		})
	}
	if d := (fixed{time.Second}).Delay(0, 0, nil); d != 0 {
		t.Errorf("fixed must reconnect at once after a disconnect, got %s", d)
	}
	if d := (fixed{time.Second}).Delay(3, 0, nil); d != time.Second {
		t.Errorf("fixed Delay(3) = %s", d)
	}
}
