package main

import (
	"encoding/json"
	"fmt"
	"io"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/stormguard/stormguard/internal/detect"
	"github.com/stormguard/stormguard/internal/replay"
)

func newReplayCmd() *cobra.Command {
	var dir, capture, config string
	var asJSON bool
	cmd := &cobra.Command{
		Use:   "replay (--journal DIR | --capture FILE) [--config FILE] [--json]",
		Short: "Run the detector over a recorded sample stream: what would this config have said?",
		Long: `Run the storm detector over a recording as if it were live, with the
recording's own timestamps, and print the state changes it would have raised.

"What would this config have said about last night?" Point it at the
directory 'stormguard watch --journal DIR' writes (every capture-*.jsonl in
it, merged per target in time order) or at one capture file (plain or
.gz), with the defaults or with the detector settings of --config.

The config file is YAML or JSON; its keys are the detector's settings in
snake_case, durations as strings; anything not given keeps its default
(docs/replay.md lists every key and docs/detector.md why each default is
what it is), e.g.

  new_conn_floor: 800        # new connections/s that alone warn
  surge_quiet: 20s
  ping_floor_ms: 250

An unknown key, a wrong type or a nonsensical value is an error (exit 2).

Output: a table of the state changes and a one-line summary; with --json
one event object per line, the same shape as 'watch --events' lines
(without evidence.attribution: a recording has no socket dumps).

Caveat: a capture holds what the live agent sampled, and the live agent
samples faster (every 100 ms) while a target is not calm. Replaying with a
more sensitive config sees only the slower calm-time samples where the live
agent was calm.

Exit codes: 0 the replay ran (also when it finds storms); 2 the recording
or the config is unreadable or malformed (the message names the file and
line).`,
		Example: `  stormguard replay --journal /var/lib/stormguard
  stormguard replay --capture capture-20260301T020230.000Z-127.0.0.1_6379.jsonl --config quieter.yaml
  stormguard replay --capture internal/corpus/testdata/benign-deploy-waves.jsonl.gz --json | jq -r .to`,
		Args: noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if (dir == "") == (capture == "") {
				return usageErr(fmt.Errorf("give exactly one of --journal DIR or --capture FILE"))
			}
			var cfg detect.Config
			if config != "" {
				var err error
				if cfg, err = replay.LoadConfig(config); err != nil {
					return usageErr(err)
				}
			}
			var rec *replay.Recording
			var err error
			if dir != "" {
				rec, err = replay.ReadJournal(dir)
			} else {
				rec, err = replay.ReadCapture(capture)
			}
			if err != nil {
				return usageErr(err)
			}
			res := replay.Run(cfg, rec)
			if asJSON {
				return writeReplayJSON(cmd.OutOrStdout(), res)
			}
			return writeReplayTable(cmd.OutOrStdout(), rec, res)
		},
	}
	f := cmd.Flags()
	f.StringVar(&dir, "journal", "", "replay every capture in this 'watch --journal' directory")
	f.StringVar(&capture, "capture", "", "replay this one capture file (.jsonl or .jsonl.gz)")
	f.StringVar(&config, "config", "", "detector settings (YAML or JSON; see docs/replay.md); default: the built-in defaults")
	f.BoolVar(&asJSON, "json", false, "one event per line, as 'watch --events' writes them")
	return cmd
}

func writeReplayJSON(w io.Writer, res replay.Result) error {
	enc := json.NewEncoder(w)
	for _, ev := range res.Events {
		if err := enc.Encode(ev); err != nil {
			return fmt.Errorf("write event: %w", err)
		}
	}
	return nil
}

func writeReplayTable(w io.Writer, rec *replay.Recording, res replay.Result) error {
	var first time.Time
	for _, r := range rec.Records {
		if r.Sample != nil {
			first = r.Time
			break
		}
	}
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "TIME\t+S\tTARGET\tCHANGE\tREASON")
	storms := 0
	for _, ev := range res.Events {
		if ev.To == detect.Storm && ev.From != detect.Recovering {
			storms++
		}
		fmt.Fprintf(tw, "%s\t%.1f\t%s\t%s → %s\t%s\n", ev.Time.UTC().Format("2006-01-02T15:04:05.000Z"),
			ev.Time.Sub(first).Seconds(), ev.Target, ev.From, ev.To, oneLine(ev.Reason))
	}
	if err := tw.Flush(); err != nil {
		return fmt.Errorf("write table: %w", err)
	}
	var final []string
	for _, t := range rec.Targets() {
		final = append(final, fmt.Sprintf("%s %s", t, res.Final[t]))
	}
	fmt.Fprintf(w, "\n%d samples over %s from %d file(s); %d state change(s), %d storm(s); final: %s\n",
		res.Samples, rec.Span().Round(time.Millisecond), len(rec.Files), len(res.Events), storms, strings.Join(final, ", "))
	return nil
}
