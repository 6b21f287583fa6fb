// SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause)
/*
 * listentrace: per-listener accept-queue truth for the port stormguard
 * watches. Everything is counted in the kernel, in per-CPU maps, for the
 * watched (network namespace, port) only; user space reads the maps once
 * per sample. The only record sent to user space is a ring-buffer event
 * when the watched listener overflows, at most one per 10 ms.
 *
 * Only tracepoints and a network-namespace sk_lookup program are used: they
 * need neither kprobes nor BPF trampolines (fentry), which many kernels
 * (and VM kernels in particular) are built without. docs/signals.md says
 * why each point.
 *   sock:inet_sock_set_state (raw)  a child socket of the watched listener
 *        is created (LISTEN -> SYN_RECV): the handshake completed; it is
 *        queued for accept() microseconds later. Timestamped by address.
 *        Any socket's move to CLOSE forgets it.
 *   syscalls:sys_{enter,exit}_accept{,4}  accept() returned an fd: its
 *        socket's timestamp gives the accept wait; the listening fd it was
 *        called on teaches the listening socket's address.
 *   The child's creation and each accept re-check whether the learned
 *   listeners' accept queues are full (for sk_lookup, below).
 *   sk_lookup (per netns)           a packet looked for a listener on the
 *        port: a SYN (or, under SYN cookies, a cookie ACK). sock_diag
 *        lookups (no remote port) are not counted. A SYN that arrives
 *        while the queue is full is about to be dropped: the wake event.
 *   read_drops (run by user space through BPF_PROG_TEST_RUN at each
 *        sample) sums the learned listeners' drop counters (sk_drops:
 *        the kernel's per-listener count of what ListenDrops counts).
 */
#include "listentrace.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_tracing.h>
#include <bpf/bpf_core_read.h>

char LICENSE[] SEC("license") = "Dual BSD/GPL";

#define TCP_ESTABLISHED 1
#define TCP_SYN_RECV 3
#define TCP_CLOSE 7
#define TCP_LISTEN 10
#define AF_INET_ 2
#define AF_INET6_ 10
#define IPPROTO_TCP_ 6

/* Histogram of the accept wait in microseconds: values below 16 us have a
 * bucket each; above, every power of two is split into 16 buckets (each
 * at most 6.25% wide), up to 2^28 us (268 s); longer waits go in the last. */
#define SUB_BITS 4
#define SUB (1 << SUB_BITS)
#define MAX_EXP 28
#define NBUCKETS (SUB + (MAX_EXP - SUB_BITS) * SUB)
#define EVENT_GAP_NS (10 * 1000 * 1000ULL)

/* Set by the loader: the watched namespace (inode) and port. */
volatile const __u32 watch_netns = 0;
volatile const __u16 watch_port = 0;

struct port_stats {
	__u64 syns;
	/* SYNs that arrived while an accept queue of the port was full. */
	__u64 syns_full;
	__u64 accepts;
	__u64 wait_sum_us;
	__u64 hist[NBUCKETS];
};

struct event {
	__u64 ts;
	__u32 slot;
	__u32 kind;
};

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct port_stats);
} stats SEC(".maps");

/* Longest wait per CPU since user space last zeroed it. */
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, __u64);
} wait_max SEC(".maps");

/* Children of the watched listener not yet accepted: socket address ->
 * creation time. LRU, and forgotten at CLOSE, so a socket freed without
 * accept() cannot leave a stale entry for a later socket at its address. */
struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 65536);
	__type(key, __u64);
	__type(value, __u64);
} queued SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, __u64);
} last_event SEC(".maps");

/* The watched port's listening sockets (v4, v6, SO_REUSEPORT groups) by
 * address, learned when they queue a child; value: 1 while that
 * listener's accept queue is full. */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 64);
	__type(key, __u64);
	__type(value, __u32);
} listeners SEC(".maps");

/* Per address family (0 = IPv4, 1 = IPv6): how many of its listeners are
 * full. sk_lookup cannot read kernel memory, so the tracepoints mirror
 * this for it. */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 2);
	__type(key, __u32);
	__type(value, __u32);
} full SEC(".maps");

/* read_drops' answer: the summed sk_drops of the live listeners, and how
 * many there were. */
struct listener_drops {
	__u64 drops;
	__u64 listeners;
};

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct listener_drops);
} drops SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_RINGBUF);
	__uint(max_entries, 4096);
} events SEC(".maps");

/* Force BTF for the types user space decodes. */
const struct port_stats *unused_stats __attribute__((unused));
const struct event *unused_event __attribute__((unused));
const struct listener_drops *unused_drops __attribute__((unused));

static __always_inline int watched(const struct sock *sk)
{
	if (BPF_CORE_READ(sk, __sk_common.skc_num) != watch_port)
		return 0;
	return BPF_CORE_READ(sk, __sk_common.skc_net.net, ns.inum) == watch_netns;
}

static __always_inline struct port_stats *port_stats(void)
{
	__u32 zero = 0;

	return bpf_map_lookup_elem(&stats, &zero);
}

static __always_inline void emit(__u32 kind)
{
	struct event *e;
	__u64 now, *last;
	__u32 zero = 0;

	last = bpf_map_lookup_elem(&last_event, &zero);
	if (!last)
		return;
	now = bpf_ktime_get_ns();
	if (*last && now - *last < EVENT_GAP_NS)
		return;
	*last = now;
	e = bpf_ringbuf_reserve(&events, sizeof(*e), 0);
	if (!e)
		return;
	e->ts = now;
	e->slot = 0;
	e->kind = kind;
	bpf_ringbuf_submit(e, 0);
}

static __always_inline __u32 family_index(const struct sock *sk)
{
	return BPF_CORE_READ(sk, __sk_common.skc_family) == AF_INET6_ ? 1 : 0;
}

/* live tells whether the address still holds the watched listener (it may
 * have been closed, and the memory reused, since it was learned). */
static __always_inline int live(const struct sock *sk)
{
	return BPF_CORE_READ(sk, __sk_common.skc_state) == TCP_LISTEN && watched(sk);
}

/* refresh records whether listener sk's accept queue is full now. */
static __always_inline void refresh(const struct sock *sk, __u32 *was, __u32 extra)
{
	/* sk_acceptq_is_full(): the kernel's own test; extra counts a child
	 * about to be queued. */
	__u32 now = BPF_CORE_READ(sk, sk_ack_backlog) + extra > BPF_CORE_READ(sk, sk_max_ack_backlog);
	__u32 fam = family_index(sk), *n;

	if (now == *was)
		return;
	*was = now;
	n = bpf_map_lookup_elem(&full, &fam);
	if (!n)
		return;
	if (now)
		__sync_fetch_and_add(n, 1);
	else if (*n > 0)
		__sync_fetch_and_add(n, (__u32)-1);
}

/* learn records listener sk (a watched, live TCP listener) and refreshes
 * its full flag. */
static __always_inline void learn(const struct sock *sk)
{
	__u64 key = (__u64)sk;
	__u32 zero = 0, *was;

	/* An MPTCP listener is two sockets; the TCP one queues and drops. */
	if (!sk || BPF_CORE_READ(sk, sk_protocol) != IPPROTO_TCP_ || !live(sk))
		return;
	was = bpf_map_lookup_elem(&listeners, &key);
	if (!was) {
		bpf_map_update_elem(&listeners, &key, &zero, BPF_NOEXIST);
		was = bpf_map_lookup_elem(&listeners, &key);
		if (!was)
			return;
	}
	refresh(sk, was, 0);
}

/* refresh_one's context: a child of this family is about to be queued
 * (family 0xff: none, after an accept). */
struct refresh_ctx {
	__u32 family;
};

static long refresh_one(void *map, __u64 *key, __u32 *was, struct refresh_ctx *c)
{
	const struct sock *sk = (const struct sock *)*key;

	if (!live(sk))
		return 0;
	refresh(sk, was, c->family == BPF_CORE_READ(sk, __sk_common.skc_family) ? 1 : 0);
	return 0;
}

static long sum_one(void *map, __u64 *key, __u32 *was, struct listener_drops *d)
{
	const struct sock *sk = (const struct sock *)*key;

	if (!live(sk))
		return 0;
	d->drops += (__u32)BPF_CORE_READ(sk, sk_drops.counter);
	d->listeners++;
	return 0;
}

/* Run by user space (BPF_PROG_TEST_RUN) at each sample; never attached. */
SEC("raw_tracepoint")
int read_drops(struct bpf_raw_tracepoint_args *ctx)
{
	struct listener_drops d = {}, *out;
	__u32 zero = 0;

	bpf_for_each_map_elem(&listeners, sum_one, &d, 0);
	out = bpf_map_lookup_elem(&drops, &zero);
	if (out)
		*out = d;
	return 0;
}

SEC("raw_tracepoint/inet_sock_set_state")
int on_set_state(struct bpf_raw_tracepoint_args *ctx)
{
	const struct sock *sk = (const struct sock *)ctx->args[0];
	int oldstate = (int)ctx->args[1], newstate = (int)ctx->args[2];
	__u64 key = (__u64)sk, now;

	if (newstate == TCP_CLOSE) {
		bpf_map_delete_elem(&queued, &key);
		return 0;
	}
	if (newstate != TCP_SYN_RECV || oldstate != TCP_LISTEN)
		return 0;
	if (BPF_CORE_READ(sk, sk_protocol) != IPPROTO_TCP_ || !watched(sk))
		return 0;
	now = bpf_ktime_get_ns();
	bpf_map_update_elem(&queued, &key, &now, BPF_ANY);
	/* The child is queued for accept() next: does that fill the queue? */
	struct refresh_ctx rc = {.family = BPF_CORE_READ(sk, __sk_common.skc_family)};
	bpf_for_each_map_elem(&listeners, refresh_one, &rc, 0);
	return 0;
}

static __always_inline __u32 log2_u64(__u64 v)
{
	__u32 r = 0, s;

	s = (v > 0xFFFFFFFFULL) << 5; v >>= s; r |= s;
	s = (v > 0xFFFF) << 4; v >>= s; r |= s;
	s = (v > 0xFF) << 3; v >>= s; r |= s;
	s = (v > 0xF) << 2; v >>= s; r |= s;
	s = (v > 0x3) << 1; v >>= s; r |= s;
	r |= (v >> 1);
	return r;
}

static __always_inline __u32 bucket(__u64 us)
{
	__u32 e;

	if (us < SUB)
		return us;
	e = log2_u64(us);
	if (e >= MAX_EXP)
		return NBUCKETS - 1;
	return SUB + (e - SUB_BITS) * SUB + ((us >> (e - SUB_BITS)) & (SUB - 1));
}

/* The layout of syscalls:sys_exit_* records. */
struct sys_exit_args {
	__u64 common;
	long syscall_nr;
	long ret;
};

/* The layout of syscalls:sys_enter_accept{,4} records. */
struct sys_enter_accept_args {
	__u64 common;
	long syscall_nr;
	long fd;
};

/* Threads inside accept(): the listening fd they passed. */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 4096);
	__type(key, __u64);
	__type(value, __s64);
} accepting SEC(".maps");

SEC("tracepoint/syscalls/sys_enter_accept4")
int on_accept4_enter(struct sys_enter_accept_args *ctx)
{
	__u64 id = bpf_get_current_pid_tgid();
	__s64 fd = ctx->fd;

	bpf_map_update_elem(&accepting, &id, &fd, BPF_ANY);
	return 0;
}

SEC("tracepoint/syscalls/sys_enter_accept")
int on_accept_enter_plain(struct sys_enter_accept_args *ctx)
{
	return on_accept4_enter(ctx);
}

static __always_inline const struct sock *fd_sock(struct file **fds, unsigned int max, long fd)
{
	struct file *f;
	struct socket *sock;

	if (fd < 0 || fd >= max)
		return 0;
	if (bpf_probe_read_kernel(&f, sizeof(f), &fds[fd]) || !f)
		return 0;
	sock = BPF_CORE_READ(f, private_data);
	if (!sock)
		return 0;
	return BPF_CORE_READ(sock, sk);
}

static __always_inline int on_accept_exit(struct sys_exit_args *ctx)
{
	struct task_struct *task;
	struct fdtable *fdt;
	struct file **fds;
	struct port_stats *st;
	struct refresh_ctx rc = {.family = 0xff};
	__u64 key, *ts, wait, us, *mx, id = bpf_get_current_pid_tgid();
	__u32 zero = 0, b;
	__s64 *lfd, listen_fd;
	unsigned int max;
	long fd = ctx->ret;

	lfd = bpf_map_lookup_elem(&accepting, &id);
	if (!lfd)
		return 0;
	listen_fd = *lfd;
	bpf_map_delete_elem(&accepting, &id);
	if (fd < 0)
		return 0;
	task = (struct task_struct *)bpf_get_current_task();
	fdt = BPF_CORE_READ(task, files, fdt);
	if (!fdt)
		return 0;
	max = BPF_CORE_READ(fdt, max_fds);
	fds = BPF_CORE_READ(fdt, fd);
	key = (__u64)fd_sock(fds, max, fd);
	ts = bpf_map_lookup_elem(&queued, &key);
	if (!ts)
		return 0;
	wait = bpf_ktime_get_ns() - *ts;
	bpf_map_delete_elem(&queued, &key);
	/* The listening socket accept() was called on: a watched one. */
	learn(fd_sock(fds, max, listen_fd));
	/* accept() took one from a queue: it may no longer be full. */
	bpf_for_each_map_elem(&listeners, refresh_one, &rc, 0);
	st = port_stats();
	if (!st)
		return 0;
	us = wait / 1000;
	st->accepts++;
	st->wait_sum_us += us;
	b = bucket(us);
	/* Keep the bounds check on the register used to index. */
	barrier_var(b);
	if (b < NBUCKETS)
		st->hist[b]++;
	mx = bpf_map_lookup_elem(&wait_max, &zero);
	if (mx && wait > *mx)
		*mx = wait;
	return 0;
}

SEC("tracepoint/syscalls/sys_exit_accept4")
int on_accept4_exit(struct sys_exit_args *ctx)
{
	return on_accept_exit(ctx);
}

SEC("tracepoint/syscalls/sys_exit_accept")
int on_accept_exit_plain(struct sys_exit_args *ctx)
{
	return on_accept_exit(ctx);
}

/* Attached to the watched namespace only. Returning SK_PASS without
 * selecting a socket lets the kernel's own lookup run as usual. */
SEC("sk_lookup")
int on_sk_lookup(struct bpf_sk_lookup *ctx)
{
	struct port_stats *st;

	/* sock_diag's lookups of a listener (stormguard's own accept-queue
	 * poller among them) run this program too, with no remote port. */
	if (ctx->protocol != IPPROTO_TCP_ || ctx->local_port != watch_port || ctx->remote_port == 0)
		return SK_PASS;
	__u32 fam = ctx->family == AF_INET6_ ? 1 : 0, *n;

	st = port_stats();
	if (st)
		st->syns++;
	/* A SYN to a full accept queue is dropped (ListenOverflows): wake
	 * user space at the first one. */
	n = bpf_map_lookup_elem(&full, &fam);
	if (n && *n > 0) {
		if (st)
			st->syns_full++;
		emit(1);
	}
	return SK_PASS;
}
