//go:build linux

// Command record re-records the detector's scenario corpus: for each shape
// it creates a network namespace with a real valkey-server
// (internal/sandbox), starts the shape's traffic, runs the real agent
// (internal/agent, default 500 ms interval with its adaptive 100 ms fast
// sampling) on that Valkey for the whole run, and writes every sample the
// agent took to NAME.jsonl.gz (the capture format `stormguard replay`
// reads) with a label NAME.label.json. Needs root and valkey-server.
//
//	go run ./internal/corpus/record -out internal/corpus/testdata        # all (≈ 25 min)
//	go run ./internal/corpus/record -only storm-kill-all,benign-churn-800
//	go run ./internal/corpus/record -relabel   # re-derive labels from the recordings
//
// Every load loop is bounded in count and time; traffic goes only to
// addresses inside the namespaces it creates; everything is removed at the
// end of each shape.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log"
	"os"
	"os/signal"
	"sort"
	"strings"
	"syscall"
	"time"

	"github.com/stormguard/stormguard/internal/sandbox"
)

func main() {
	sandbox.ServeDelayLine() // the benign-slow-link shape's relay runs in a child of this binary
	out := flag.String("out", "internal/corpus/testdata", "directory for NAME.jsonl.gz and NAME.label.json")
	only := flag.String("only", "", "comma-separated shape names (default: all)")
	list := flag.Bool("list", false, "list the shapes and exit")
	relabelOnly := flag.Bool("relabel", false, "recompute the derived label fields of the existing recordings (no recording, no root)")
	flag.Parse()
	log.SetFlags(log.Ltime | log.Lmicroseconds)
	if *list {
		for _, s := range shapes {
			fmt.Printf("%-32s %-6s %s\n", s.name, s.kind, s.desc)
		}
		return
	}
	want := map[string]bool{}
	for _, n := range strings.Split(*only, ",") {
		if n = strings.TrimSpace(n); n != "" {
			want[n] = true
		}
	}
	for n := range want {
		if find(n) == nil {
			log.Fatalf("unknown shape %q (see -list)", n)
		}
	}
	if *relabelOnly {
		for _, s := range shapes {
			if len(want) > 0 && !want[s.name] {
				continue
			}
			if err := relabel(*out, s); err != nil && !errors.Is(err, os.ErrNotExist) {
				log.Fatalf("relabel %s: %v", s.name, err)
			}
		}
		return
	}
	if err := os.MkdirAll(*out, 0o755); err != nil {
		log.Fatal(err)
	}
	raiseNoFile()
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	var failed []string
	names := make([]string, 0, len(shapes))
	for _, s := range shapes {
		if len(want) > 0 && !want[s.name] {
			continue
		}
		names = append(names, s.name)
		t0 := time.Now()
		log.Printf("== %s: %s", s.name, s.desc)
		if err := record(ctx, *out, s); errors.Is(err, errSkip) {
			log.Printf("-- %s skipped: %v", s.name, err)
		} else if err != nil {
			log.Printf("!! %s: %v", s.name, err)
			failed = append(failed, s.name)
		} else {
			log.Printf("ok %s in %s", s.name, time.Since(t0).Round(time.Second))
		}
		if ctx.Err() != nil {
			break
		}
	}
	sort.Strings(failed)
	if len(failed) > 0 {
		log.Fatalf("%d of %d shapes failed: %s", len(failed), len(names), strings.Join(failed, ", "))
	}
}

// errSkip: the shape cannot be recorded on this machine (a missing kernel
// feature); reported, not a failure, and the committed recording is kept.
var errSkip = errors.New("cannot record here")

func raiseNoFile() {
	var r syscall.Rlimit
	if syscall.Getrlimit(syscall.RLIMIT_NOFILE, &r) == nil && r.Cur < 65536 {
		r.Cur = min(65536, r.Max)
		_ = syscall.Setrlimit(syscall.RLIMIT_NOFILE, &r)
	}
}
