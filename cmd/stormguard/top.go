package main

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"strings"
	"time"

	tea "github.com/charmbracelet/bubbletea"
	"github.com/charmbracelet/x/term"
	"github.com/spf13/cobra"

	"github.com/stormguard/stormguard/internal/addr"
	"github.com/stormguard/stormguard/internal/agent"
	"github.com/stormguard/stormguard/internal/serve"
	"github.com/stormguard/stormguard/internal/source"
	"github.com/stormguard/stormguard/internal/tui"
)

const defaultAgentURL = "http://127.0.0.1:9877"

func newTopCmd() *cobra.Command {
	var (
		valkey       []string
		agentURL, ns string
		conn         valkeyConnFlags
		tokenFile    string
		interval     time.Duration
	)
	cmd := &cobra.Command{
		Use:   "top [--valkey ADDR | --agent URL]",
		Short: "Live terminal view of every target's storm state and signals",
		Long: `Show each target's address, state and live signals until q or Ctrl-C:
new connections/s (sparkline) against the learned baseline, accept-queue peak
vs limit, SYN_RECV, drops, clients vs maxclients, conntrack fill, PING, and
the latest events.

With stdout not a terminal (a pipe, a file) it prints a plain-text frame
every --interval, a blank line between frames, until SIGINT or SIGTERM.

With --valkey, top samples the targets itself. With --agent, it reads a
running 'stormguard watch'. With neither, it uses the local agent at
` + defaultAgentURL + ` if one answers, else discovers local Valkey servers.`,
		Example: `  stormguard top
  stormguard top --valkey 127.0.0.1:6379
  stormguard top --agent http://10.0.0.5:9877 --bearer-token-file token`,
		Args: noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if len(valkey) > 0 && agentURL != "" {
				return usageErr(fmt.Errorf("give --valkey or --agent, not both"))
			}
			if interval < 50*time.Millisecond {
				return usageErr(fmt.Errorf("--interval %s is too short (minimum 50ms)", interval))
			}
			token := ""
			if tokenFile != "" {
				var err error
				if token, err = serve.ReadTokenFile(tokenFile); err != nil {
					return usageErr(err)
				}
			}
			ctx, cancel := context.WithCancel(cmd.Context())
			defer cancel()
			if agentURL == "" && len(valkey) == 0 && agentAnswers(defaultAgentURL, token) {
				agentURL = defaultAgentURL
			}
			var feed tui.Feed
			from := ""
			if agentURL != "" {
				if !strings.HasPrefix(agentURL, "http://") && !strings.HasPrefix(agentURL, "https://") {
					return usageErr(fmt.Errorf("--agent %q: want an http:// or https:// URL", agentURL))
				}
				feed, from = tui.AgentFeed(agentURL, token), "agent "+agentURL
			} else {
				var targets []source.Target
				for _, v := range valkey {
					t, err := resolveTarget(v, conn, ns)
					if err != nil {
						return usageErr(err)
					}
					targets = append(targets, t)
				}
				var a addr.Addr
				if err := a.ApplyPassword(conn.passwordFile, os.Getenv); err != nil {
					return usageErr(err)
				}
				hub := serve.NewHub(source.Names(), 10, 200)
				ag, err := agent.New(agent.Options{Targets: targets, Interval: interval, Version: version, Hub: hub, User: a.User, Password: a.Password})
				if err != nil {
					return usageErr(err)
				}
				go ag.Run(ctx)
				feed, from = tui.HubFeed(hub), "local"
			}
			if f, ok := cmd.OutOrStdout().(*os.File); !ok || !term.IsTerminal(f.Fd()) {
				// A pipe or a file gets plain frames, not a full-screen UI.
				return tui.Print(ctx, tui.New(feed, interval, from), cmd.OutOrStdout())
			}
			p := tea.NewProgram(tui.New(feed, interval, from), teaOptions(ctx, cmd.InOrStdin(), cmd.OutOrStdout())...)
			_, err := p.Run()
			if err != nil && ctx.Err() == nil && !strings.Contains(err.Error(), "context canceled") {
				return fmt.Errorf("terminal UI: %w", err)
			}
			return nil
		},
	}
	f := cmd.Flags()
	f.StringArrayVar(&valkey, "valkey", nil, "Valkey address to sample directly (repeatable)")
	f.StringVar(&agentURL, "agent", "", "URL of a running stormguard watch, e.g. "+defaultAgentURL)
	conn.register(f)
	f.StringVar(&ns, "netns", "", "network namespace of the --valkey targets")
	f.StringVar(&tokenFile, "bearer-token-file", "", "bearer token for --agent")
	f.DurationVar(&interval, "interval", 500*time.Millisecond, "refresh interval")
	return cmd
}

// teaOptions are top's Bubble Tea options. main's context already ends on
// SIGINT and SIGTERM, so Bubble Tea's own signal handler stays off: with it,
// a SIGTERM both cancelled ctx and queued a quit message that nobody read
// once Run had returned, and top hung on exit. Keys are read only from a
// terminal: /dev/null or a pipe cannot be polled for them (Bubble Tea failed
// to start, exit 2), so a top started by a script runs until a signal.
func teaOptions(ctx context.Context, in io.Reader, out io.Writer) []tea.ProgramOption {
	if f, ok := in.(*os.File); !ok || !term.IsTerminal(f.Fd()) {
		in = nil
	}
	return []tea.ProgramOption{tea.WithAltScreen(), tea.WithContext(ctx), tea.WithoutSignalHandler(),
		tea.WithInput(in), tea.WithOutput(out)}
}

func agentAnswers(url, token string) bool {
	req, err := http.NewRequest(http.MethodGet, url+"/healthz", nil)
	if err != nil {
		return false
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	c := &http.Client{Timeout: 300 * time.Millisecond}
	resp, err := c.Do(req)
	if err != nil {
		return false
	}
	resp.Body.Close()
	return resp.StatusCode == http.StatusOK || resp.StatusCode == http.StatusServiceUnavailable
}
