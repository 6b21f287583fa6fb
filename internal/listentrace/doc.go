// Package listentrace measures, in the kernel, what sock_diag polling cannot
// see for one watched listener (network namespace and port): how long
// connections wait in the accept queue between the handshake completing and
// accept(), how many SYNs reach the port, and how many connections this
// listener (not the namespace) dropped because its accept queue was full.
//
// The BPF programs (bpf/listentrace.c) count into per-CPU maps filtered to
// the watched port; user space reads the maps once per sample. The one
// event sent to user space is a ring-buffer record on an overflow, at most
// one per port per 10 ms, so a storm wakes the sampler at the first drop.
// The compiled objects are committed (listentrace_*_bpfel.o); `make
// generate` rebuilds them with bpf2go.
//
// Programs attach through file-descriptor links and nothing is pinned: when
// the process exits, even by SIGKILL, the kernel detaches them and frees the
// maps.
package listentrace
