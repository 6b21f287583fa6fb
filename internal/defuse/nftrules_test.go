package defuse

import (
	"strings"
	"testing"
	"time"
)

func TestBuildNFTRender(t *testing.T) {
	const id = "0a1b2c3d"
	tests := []struct {
		a    Action
		p    Params
		want []string
	}{
		{
			a: RatelimitSYN, p: Params{Port: 6379, TTL: 90 * time.Second, Rate: Rate{20, "second"}, Burst: 40},
			want: []string{
				"add table inet stormguard",
				"add chain inet stormguard prerouting { type filter hook prerouting priority -300; policy accept; }",
				"add set inet stormguard arm-0a1b2c3d { type inet_service; flags timeout; }",
				"add element inet stormguard arm-0a1b2c3d { 6379 timeout 90s }",
				"add set inet stormguard src4-0a1b2c3d { type ipv4_addr; size 65536; flags dynamic,timeout; timeout 60s; }",
				"add set inet stormguard src6-0a1b2c3d { type ipv6_addr; size 65536; flags dynamic,timeout; timeout 60s; }",
				`add rule inet stormguard prerouting meta nfproto ipv4 tcp dport @arm-0a1b2c3d tcp flags & (syn | ack) == syn update @src4-0a1b2c3d { ip saddr limit rate over 20/second burst 40 packets } counter drop comment "stormguard:0a1b2c3d ratelimit-syn"`,
				`add rule inet stormguard prerouting meta nfproto ipv6 tcp dport @arm-0a1b2c3d tcp flags & (syn | ack) == syn update @src6-0a1b2c3d { ip6 saddr limit rate over 20/second burst 40 packets } counter drop comment "stormguard:0a1b2c3d ratelimit-syn"`,
			},
		},
		{
			a: RatelimitGlobal, p: Params{Port: 7000, TTL: 1500 * time.Millisecond, Rate: Rate{100, "minute"}, Burst: 100},
			want: []string{
				"add table inet stormguard",
				"add chain inet stormguard prerouting { type filter hook prerouting priority -300; policy accept; }",
				"add set inet stormguard arm-0a1b2c3d { type inet_service; flags timeout; }",
				"add element inet stormguard arm-0a1b2c3d { 7000 timeout 1500ms }",
				`add rule inet stormguard prerouting tcp dport @arm-0a1b2c3d tcp flags & (syn | ack) == syn limit rate over 100/minute burst 100 packets counter drop comment "stormguard:0a1b2c3d ratelimit-global"`,
			},
		},
		{
			a: RatelimitGlobal, p: Params{Port: 6379, TTL: time.Minute, Rate: Rate{80, "second"}, Burst: 80, RemoteOnly: true},
			want: []string{
				"add table inet stormguard",
				"add chain inet stormguard prerouting { type filter hook prerouting priority -300; policy accept; }",
				"add set inet stormguard arm-0a1b2c3d { type inet_service; flags timeout; }",
				"add element inet stormguard arm-0a1b2c3d { 6379 timeout 60s }",
				`add rule inet stormguard prerouting tcp dport @arm-0a1b2c3d tcp flags & (syn | ack) == syn iifname != "lo" limit rate over 80/second burst 80 packets counter drop comment "stormguard:0a1b2c3d ratelimit-global"`,
			},
		},
		{
			a: Notrack, p: Params{Port: 6379, TTL: 10 * time.Minute},
			want: []string{
				"add table inet stormguard",
				"add chain inet stormguard prerouting { type filter hook prerouting priority -300; policy accept; }",
				"add chain inet stormguard output { type filter hook output priority -300; policy accept; }",
				"add set inet stormguard arm-0a1b2c3d { type inet_service; flags timeout; }",
				"add element inet stormguard arm-0a1b2c3d { 6379 timeout 600s }",
				`add rule inet stormguard prerouting tcp dport @arm-0a1b2c3d counter notrack comment "stormguard:0a1b2c3d notrack"`,
				`add rule inet stormguard output tcp sport @arm-0a1b2c3d counter notrack comment "stormguard:0a1b2c3d notrack"`,
			},
		},
	}
	for _, tt := range tests {
		t.Run(string(tt.a), func(t *testing.T) {
			spec, err := buildNFT(id, tt.a, tt.p)
			if err != nil {
				t.Fatal(err)
			}
			got := spec.render()
			if strings.Join(got, "\n") != strings.Join(tt.want, "\n") {
				t.Errorf("render:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(tt.want, "\n"))
			}
			for _, r := range spec.Rules {
				if idFromComment(r.Comment) != id || actionFromComment(r.Comment) != tt.a {
					t.Errorf("comment %q does not carry id and action", r.Comment)
				}
			}
		})
	}
	if _, err := buildNFT(id, AcceptCap, Params{}); err == nil {
		t.Error("buildNFT(accept-cap) should fail")
	}
}

func TestSrcTimeoutBounds(t *testing.T) {
	for _, tt := range []struct{ ttl, want time.Duration }{
		{10 * time.Minute, maxSrcTimeout}, {3 * time.Second, 3 * time.Second}, {200 * time.Millisecond, time.Second},
	} {
		spec, _ := buildNFT("x", RatelimitSYN, Params{Port: 1, TTL: tt.ttl, Rate: Rate{1, "second"}, Burst: 5})
		if got := spec.Sets[1].Timeout; got != tt.want {
			t.Errorf("ttl %s: source set timeout %s, want %s", tt.ttl, got, tt.want)
		}
	}
}

func TestIDFromComment(t *testing.T) {
	for in, want := range map[string]string{
		"stormguard:abc ratelimit-syn": "abc", "stormguard:abc": "abc", "other": "", "": "",
	} {
		if got := idFromComment(in); got != want {
			t.Errorf("idFromComment(%q) = %q, want %q", in, got, want)
		}
	}
}
