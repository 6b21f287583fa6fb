package main

import (
	"bytes"
	"context"
	"strings"
	"testing"
)

// runCLI runs the root command in-process and returns the exit code and
// the one line main would print.
func runStormCLI(t *testing.T, args ...string) (int, string, string) {
	t.Helper()
	root := newRootCmd()
	var out, errOut bytes.Buffer
	root.SetOut(&out)
	root.SetErr(&errOut)
	root.SetArgs(args)
	err := root.ExecuteContext(context.Background())
	msg := ""
	if err != nil {
		msg = oneLine(err.Error())
	}
	return exitCode(err), msg, out.String()
}

func TestStormBadInput(t *testing.T) {
	tests := []struct {
		name string
		args []string
		want string
	}{
		{"unknown strategy", []string{"--target", "127.0.0.1:6379", "--clients", "5", "--strategy", "yolo"}, "unknown strategy"},
		{"negative clients", []string{"--target", "127.0.0.1:6379", "--clients", "-3", "--strategy", "immediate"}, "--clients"},
		{"zero clients", []string{"--target", "127.0.0.1:6379", "--strategy", "immediate"}, "--clients"},
		{"negative instances", []string{"--target", "127.0.0.1:6379", "--clients", "5", "--instances", "-1", "--strategy", "immediate"}, "--instances"},
		{"zero instances", []string{"--target", "127.0.0.1:6379", "--clients", "5", "--instances", "0", "--strategy", "immediate"}, "--instances must be at least 1, got 0"},
		{"unknown scenario", []string{"--target", "127.0.0.1:6379", "--clients", "5", "--strategy", "immediate", "--scenario", "flood"}, "unknown scenario"},
		{"bad duration syntax", []string{"--target", "127.0.0.1:6379", "--clients", "5", "--strategy", "immediate", "--period", "soon"}, "period"},
		{"negative duration", []string{"--target", "127.0.0.1:6379", "--clients", "5", "--strategy", "immediate", "--hold", "-1s"}, "--hold"},
		{"negative blip", []string{"--spawn", "--clients", "5", "--strategy", "immediate", "--scenario", "blip", "--blip", "-2s"}, "--blip"},
		{"no strategy", []string{"--target", "127.0.0.1:6379", "--clients", "5"}, "--strategy"},
		{"strategy and compare", []string{"--target", "127.0.0.1:6379", "--clients", "5", "--strategy", "glide", "--compare", "immediate"}, "mutually exclusive"},
		{"unknown strategy in compare", []string{"--target", "127.0.0.1:6379", "--clients", "5", "--compare", "immediate,nope"}, "nope"},
		{"no target", []string{"--clients", "5", "--strategy", "immediate"}, "--target"},
		{"bad address", []string{"--target", "localhost", "--clients", "5", "--strategy", "immediate"}, "bad Valkey address"},
		{"tls target unreachable", []string{"--target", "valkeys://127.0.0.1:1", "--clients", "5", "--strategy", "immediate"}, "cannot reach Valkey"},
		{"tls with a plain target", []string{"--tls", "--target", "127.0.0.1:6379", "--clients", "5", "--strategy", "immediate"}, "--tls: target 127.0.0.1:6379 is not TLS"},
		{"spawn and target", []string{"--spawn", "--target", "127.0.0.1:6379", "--clients", "5", "--strategy", "immediate"}, "--spawn"},
		{"sysctls without spawn", []string{"--target", "127.0.0.1:6379", "--somaxconn", "128", "--clients", "5", "--strategy", "immediate"}, "--spawn"},
		{"restart without a way to restart", []string{"--target", "127.0.0.1:6379", "--clients", "5", "--strategy", "immediate", "--scenario", "restart"}, "--restart-cmd"},
		{"blip without namespace", []string{"--target", "127.0.0.1:6379", "--clients", "5", "--strategy", "immediate", "--scenario", "blip"}, "--netns"},
		{"bad netns", []string{"--target", "127.0.0.1:6379", "--netns", "/nonexistent/ns", "--clients", "5", "--strategy", "immediate"}, "/nonexistent/ns"},
		{"glide jitter out of range", []string{"--target", "127.0.0.1:6379", "--clients", "5", "--strategy", "glide", "--jitter-percent", "150"}, "jitter"},
		{"unreachable target", []string{"--target", "127.0.0.1:1", "--clients", "5", "--strategy", "immediate"}, "cannot reach Valkey"},
		{"instances over clients names both flags", []string{"--target", "127.0.0.1:6379", "--clients", "5", "--instances", "6", "--strategy", "immediate"}, "--instances 6 exceeds --clients 5"},
		{"negative down", []string{"--spawn", "--clients", "5", "--strategy", "immediate", "--scenario", "restart", "--down", "-1s"}, "--down must not be negative"},
		{"spawn and restart-cmd", []string{"--spawn", "--clients", "5", "--strategy", "immediate", "--restart-cmd", "true"}, "--restart-cmd is for"},
		{"zero hosts", []string{"--spawn", "--hosts", "0", "--clients", "5", "--strategy", "immediate"}, "--hosts must be at least 1"},
		{"negative rtt", []string{"--spawn", "--hosts", "2", "--rtt", "-1s", "--clients", "5", "--strategy", "immediate"}, "--rtt must not be negative"},
		{"loss of everything", []string{"--spawn", "--hosts", "2", "--loss", "100", "--clients", "5", "--strategy", "immediate"}, "--loss"},
		{"hosts without spawn", []string{"--target", "127.0.0.1:6379", "--hosts", "2", "--clients", "5", "--strategy", "immediate"}, "--hosts builds client hosts around the lab's own server: give --spawn"},
		{"rtt without hosts", []string{"--spawn", "--rtt", "1ms", "--clients", "5", "--strategy", "immediate"}, "give --hosts"},
		{"unknown setup", []string{"--spawn", "--setup", "tls", "--clients", "5", "--strategy", "immediate"}, "--setup: unknown setup"},
		{"auth without a user", []string{"--target", "127.0.0.1:6379", "--setup", "auth", "--clients", "5", "--strategy", "immediate"}, "--setup auth needs an ACL user"},
		{"unknown defuse mode", []string{"--spawn", "--defuse", "on", "--clients", "5", "--strategy", "immediate"}, `--defuse "on": want off or auto`},
		{"defuse auto without a namespace", []string{"--target", "127.0.0.1:6379", "--defuse", "auto", "--clients", "5", "--strategy", "immediate"}, "--defuse auto arms rules in the server's namespace"},
		{"failover without spawn", []string{"--target", "127.0.0.1:6379", "--scenario", "failover", "--clients", "5", "--strategy", "immediate"}, "the failover --scenario starts a replica next to the lab's own server: give --spawn"},
		{"failover with glide", []string{"--spawn", "--scenario", "failover", "--clients", "5", "--strategy", "valkey-glide"}, "valkey-glide"},
		{"negative warm-up connect timeout", []string{"--spawn", "--warmup-connect-timeout", "-1s", "--clients", "5", "--strategy", "immediate"}, "--warmup-connect-timeout must not be negative"},
		{"redis-py needs a namespace", []string{"--target", "127.0.0.1:6379", "--clients", "10", "--instances", "2", "--strategy", "redis-py"}, "--netns"},
		{"stray argument", []string{"now", "--target", "127.0.0.1:6379", "--clients", "5", "--strategy", "immediate"}, "now"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			code, msg, out := runStormCLI(t, append([]string{"storm"}, tt.args...)...)
			if code != exitUsage {
				t.Fatalf("exit %d, want %d (msg %q)", code, exitUsage, msg)
			}
			if !strings.Contains(msg, tt.want) || strings.Contains(msg, "\n") {
				t.Fatalf("message %q, want one line containing %q", msg, tt.want)
			}
			if out != "" {
				t.Fatalf("printed %q on stdout for bad input", out)
			}
		})
	}
}

func TestStormPasswordNotLeaked(t *testing.T) {
	_, msg, _ := runStormCLI(t, "storm", "--target", "valkey://u:hunter2@127.0.0.1:1", "--clients", "1", "--strategy", "immediate")
	if strings.Contains(msg, "hunter2") {
		t.Fatalf("password in error: %q", msg)
	}
}
