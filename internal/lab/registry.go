package lab

import (
	"fmt"
	"slices"
)

// registry maps names to strategies or scenarios, in the order they are
// listed (a full comparison runs strategies in that order). It is filled by
// init functions (database/sql.Register style: a strategy lives in its own
// file, the valkey-glide one only in builds that have it) and only read
// afterwards.
type registry[T any] struct {
	byName map[string]T
	rank   map[string]int
}

func (r *registry[T]) register(rank int, name string, v T) {
	if r.byName == nil {
		r.byName, r.rank = map[string]T{}, map[string]int{}
	}
	if _, dup := r.byName[name]; dup {
		panic(fmt.Sprintf("lab: %q registered twice", name))
	}
	r.byName[name], r.rank[name] = v, rank
}

func (r *registry[T]) get(name string) (T, bool) {
	v, ok := r.byName[name]
	return v, ok
}

// names lists the registered names by rank.
func (r *registry[T]) names() []string {
	out := make([]string, 0, len(r.byName))
	for n := range r.byName {
		out = append(out, n)
	}
	slices.SortFunc(out, func(a, b string) int { return r.rank[a] - r.rank[b] })
	return out
}

var (
	strategies registry[strategy]
	scenarios  registry[scenario]
)

// Strategies returns the strategies the lab knows, in the order of a full
// comparison (including valkey-glide, which a binary may lack: see
// AvailableStrategies).
func Strategies() []string { return strategies.names() }

// Scenarios returns the scenarios the lab can run.
func Scenarios() []string { return scenarios.names() }
