// Command funclen lists the functions outside tests that are longer than
// a limit (120 lines) and do not say why in their doc comment. The reason
// is a doc-comment line starting with "funclen:", e.g.
//
//	// funclen: one switch over every flag; split, it reads worse.
//
// Generated files and tests are skipped. It exits 1 when it lists any:
//
//	go run ./scripts/funclen [-max 120] [DIR]
package main

import (
	"flag"
	"fmt"
	"os"
)

func main() {
	limit := flag.Int("max", DefaultMax, "longest function allowed without a reason, in lines")
	flag.Usage = func() {
		fmt.Fprintf(flag.CommandLine.Output(), "usage: funclen [-max N] [DIR]\n\nLists non-test functions longer than N lines (default %d) whose doc comment\nhas no \"funclen:\" line saying why. Exit 1 when any is found, 2 on bad input.\n", DefaultMax)
		flag.PrintDefaults()
	}
	flag.Parse()
	root := "."
	switch flag.NArg() {
	case 0:
	case 1:
		root = flag.Arg(0)
	default:
		flag.Usage()
		os.Exit(2)
	}
	long, err := Find(root, *limit)
	if err != nil {
		fmt.Fprintln(os.Stderr, "funclen:", err)
		os.Exit(2)
	}
	for _, f := range long {
		fmt.Println(f)
	}
	if len(long) > 0 {
		fmt.Fprintf(os.Stderr, "funclen: %d function(s) over %d lines without a \"funclen:\" reason in their doc comment\n", len(long), *limit)
		os.Exit(1)
	}
}
