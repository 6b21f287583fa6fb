package lab

import (
	"context"
	"crypto/tls"
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
		{"no target", func(c *Config) { c.Target = "" }, "no Target"},
		{"zero clients", func(c *Config) { c.Clients = 0 }, "Clients must"},
		{"negative clients", func(c *Config) { c.Clients = -5 }, "Clients"},
		{"negative instances", func(c *Config) { c.Instances = -1 }, "Instances"},
		{"more instances than clients", func(c *Config) { c.Instances = 11 }, "exceeds"},
		{"unknown strategy", func(c *Config) { c.Strategy = "yolo" }, "unknown strategy"},
		{"negative source addresses", func(c *Config) { c.SourceAddrs = -1 }, "SourceAddrs"},
		{"too many source addresses", func(c *Config) { c.SourceAddrs = maxSourceAddrs + 1 }, "SourceAddrs"},
		{"unknown scenario", func(c *Config) { c.Scenario = "flood" }, "unknown scenario"},
		{"churn needs immediate", func(c *Config) { c.Scenario, c.Strategy = "churn", "glide" }, "churn"},
		{"restart needs a hook", func(c *Config) { c.Scenario = "restart" }, "Spawn or Restart"},
		{"restart with hook", func(c *Config) { c.Scenario, c.Restart = "restart", restart }, ""},
		{"blip needs netns", func(c *Config) { c.Scenario = "blip" }, "NetNS or Spawn"},
		{"negative period", func(c *Config) { c.Period = -time.Second }, "Period"},
		{"negative blip", func(c *Config) { c.Blip = -time.Second }, "Blip"},
		{"glide jitter over 100", func(c *Config) { c.Strategy, c.Policy.GLIDE.JitterPercent = "glide", 101 }, "jitter"},
		{"spawn and target", func(c *Config) { c.Spawn = &Spawn{} }, "do not also give Target"},
		{"spawn without target", func(c *Config) { c.Target, c.Spawn = "", &Spawn{} }, ""},
		{"spawn allows blip", func(c *Config) { c.Target, c.Spawn, c.Scenario = "", &Spawn{}, "blip" }, ""},
		{"spawn allows restart", func(c *Config) { c.Target, c.Spawn, c.Scenario = "", &Spawn{}, "restart" }, ""},
		{"spawn and restart hook", func(c *Config) { c.Target, c.Spawn, c.Restart = "", &Spawn{}, restart }, "Restart is for"},
		{"negative down", func(c *Config) { c.Target, c.Spawn = "", &Spawn{Down: -time.Second} }, "Spawn.Down"},
		{"bad syncookies", func(c *Config) { v := 3; c.Target, c.Spawn = "", &Spawn{Syncookies: &v} }, "Spawn.Syncookies"},
		{"cluster needs failover", func(c *Config) { c.Cluster = true }, "failover Scenario only"},
		{"cluster failover", func(c *Config) {
			c.Target, c.Spawn, c.Scenario, c.Strategy, c.Cluster = "", &Spawn{}, "failover", "valkey-go", true
		}, ""},
		{"cluster needs a cluster client", func(c *Config) {
			c.Target, c.Spawn, c.Scenario, c.Cluster = "", &Spawn{}, "failover", true
		}, "go-redis, valkey-go or valkey-glide"},
		{"cluster over TLS, hosts and auth", func(c *Config) {
			c.Target, c.Spawn, c.Scenario, c.Strategy, c.Cluster, c.TLS = "", &Spawn{}, "failover", "go-redis", true, true
			c.Hosts, c.Setup = 3, "auth"
		}, ""},
		{"redis-py over TLS, hosts and auth", func(c *Config) {
			c.Target, c.Spawn, c.Strategy, c.TLS, c.Hosts, c.Setup = "", &Spawn{}, RedisPyStrategy, true, 4, "auth"
		}, ""},
		{"redis-py TLS needs the run's CA", func(c *Config) {
			c.NetNS, c.Strategy, c.TLS, c.TLSConfig = "/proc/1/ns/net", RedisPyStrategy, true, &tls.Config{}
		}, "only against the run's own server"},
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

// TestDefaultGLIDE: a zero Policy.GLIDE is GLIDE's defaults; a set one is
// kept, explicit 0% jitter included.
func TestDefaultGLIDE(t *testing.T) {
	c := Config{Strategy: "glide"}.withDefaults()
	if c.Policy.GLIDE != backoff.DefaultGLIDE() {
		t.Errorf("zero GLIDE -> %+v", c.Policy.GLIDE)
	}
	set := backoff.GLIDE{Retries: 5, Factor: 100, ExponentBase: 2, JitterPercent: 0}
	c = Config{Strategy: "glide", Policy: backoff.Params{GLIDE: set}}.withDefaults()
	if c.Policy.GLIDE != set {
		t.Errorf("explicit GLIDE %+v -> %+v", set, c.Policy.GLIDE)
	}
}
