package main

import (
	"github.com/spf13/cobra"
)

// version is set at build time with -ldflags "-X main.version=…".
var version = "dev"

func newRootCmd() *cobra.Command {
	root := &cobra.Command{
		Use:   "stormguard",
		Short: "Detect and defuse TCP connection storms against Valkey",
		Long: `stormguard detects and defuses TCP connection storms against Valkey before
they take Valkey down: sub-second, gap-free telemetry of the kernel's accept
and SYN queues, conntrack, NIC allowances and Valkey's own counters.

Exit codes: 0 success, 1 a finding or condition (documented per command),
2 usage or connection error.

Shell completion: see 'stormguard completion --help'.`,
		Example: `  stormguard sample --valkey 127.0.0.1:6379 --count 5
  stormguard watch                      # the agent; dashboard on http://127.0.0.1:9877/
  stormguard top
  stormguard check --valkey 127.0.0.1:6379
  stormguard defuse plan --valkey 127.0.0.1:6379`,
		Version:       version,
		SilenceErrors: true,
		SilenceUsage:  true,
	}
	root.SetFlagErrorFunc(func(c *cobra.Command, err error) error { return usageErr(err) })
	root.AddCommand(
		newSampleCmd(),
		newDefuseCmd(),
		newWatchCmd(),
		newReportCmd(),
		newTopCmd(),
		newBackoffCmd(),
		newCheckCmd(),
		newStormCmd(),
		newSimulateCmd(),
		newReplayCmd(),
	)
	addCompletionAndHelp(root)
	return root
}
