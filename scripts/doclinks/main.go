// Command doclinks checks that every relative markdown link in README.md and
// docs/ resolves: the file or directory it names exists, and its #anchor is
// a heading of the target file (GitHub's slugs) or an explicit <a id>.
// Docs get restructured and sections move between files; a link that
// silently lands at the top of the wrong page is worse than none.
//
//	go run ./scripts/doclinks [ROOT]
//
// It prints one line per broken link and exits 1 when there is any, 2 on
// bad input. make test runs it through TestRepository.
package main

import (
	"fmt"
	"os"
)

func main() {
	root := "."
	switch len(os.Args) {
	case 1:
	case 2:
		root = os.Args[1]
	default:
		fmt.Fprintln(os.Stderr, "usage: doclinks [ROOT]")
		os.Exit(2)
	}
	broken, err := Check(root)
	if err != nil {
		fmt.Fprintln(os.Stderr, "doclinks:", err)
		os.Exit(2)
	}
	for _, b := range broken {
		fmt.Println(b)
	}
	if len(broken) > 0 {
		os.Exit(1)
	}
}
