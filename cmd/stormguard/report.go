package main

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/spf13/cobra"

	"github.com/stormguard/stormguard/internal/detect"
	"github.com/stormguard/stormguard/internal/report"
)

func newReportCmd() *cobra.Command {
	var dir, out, capture string
	cmd := &cobra.Command{
		Use:   "report --journal DIR --out FILE",
		Short: "Write a postmortem of a recorded storm (HTML with inline charts, or Markdown)",
		Long: `Write a self-contained postmortem from what 'stormguard watch --journal DIR'
recorded: the timeline of state changes, charts of new connections, drops,
the accept queue, clients and conntrack (shaded by state), the detector's
verdict and evidence, and recommended next steps.

By default the newest capture in DIR is used; --capture picks another.
--out ending in .md writes Markdown (for a ticket); anything else writes HTML
that needs no network to view.`,
		Example: `  stormguard report --journal /var/lib/stormguard --out storm.html
  stormguard report --journal /var/lib/stormguard --capture capture-20260301T020230.000Z-127.0.0.1_6379.jsonl --out storm.md`,
		Args: noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if dir == "" && !strings.ContainsRune(capture, os.PathSeparator) {
				return usageErr(fmt.Errorf("--journal DIR is required (the directory given to watch --journal)"))
			}
			path := capture
			if path == "" {
				var err error
				if path, err = report.Latest(dir); err != nil {
					return usageErr(err)
				}
			} else if !strings.ContainsRune(path, os.PathSeparator) {
				path = filepath.Join(dir, path)
			}
			a, err := report.Analyze(path, detect.Config{})
			if err != nil {
				return usageErr(err)
			}
			var buf bytes.Buffer
			if strings.HasSuffix(strings.ToLower(out), ".md") {
				err = a.Markdown(&buf)
			} else {
				err = a.HTML(&buf)
			}
			if err != nil {
				return fmt.Errorf("render report: %w", err)
			}
			if err := os.WriteFile(out, buf.Bytes(), 0o644); err != nil {
				return usageErr(fmt.Errorf("write report: %w", err))
			}
			fmt.Fprintf(cmd.OutOrStdout(), "wrote %s: %s on %s, %s, %d samples\n", out, a.Worst, a.Target, a.Duration().Round(1e6), len(a.Points))
			return nil
		},
	}
	cmd.Flags().StringVar(&dir, "journal", "", "the directory given to watch --journal")
	cmd.Flags().StringVar(&out, "out", "", "output file (.html or .md)")
	cmd.Flags().StringVar(&capture, "capture", "", "capture file to use (default: the newest in --journal)")
	_ = cmd.MarkFlagRequired("out")
	return cmd
}
