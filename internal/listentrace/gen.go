package listentrace

// The BPF objects and their Go bindings are generated and committed, so a
// build needs no clang; `make generate` (clang, libbpf headers) remakes them.
//go:generate go tool bpf2go -tags linux -target amd64,arm64 -type port_stats -type event -type listener_drops listentrace bpf/listentrace.c -- -I/usr/include -I/usr/include/x86_64-linux-gnu -O2 -g -Wall
