// SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause)
/*
 * listentrace: per-listener accept-queue truth for the port stormguard
 * watches. Everything is counted in the kernel, in per-CPU maps, for the
 * watched (network namespace, port) only; user space reads the maps once
 * per sample. The only records sent to user space are ring-buffer events:
 * the watched listener overflows (at most one per 10 ms), or a connection
 * arrived while no listener of the port is known (relearn them).
 *
 * Only tracepoints, a TCP socket iterator and a network-namespace
 * sk_lookup program are used: they need neither kprobes nor BPF
 * trampolines (fentry), which many kernels (and VM kernels in particular)
 * are built without. docs/signals.md says why each point.
 *   tp_btf sock:inet_sock_set_state  every TCP state change; returns after
 *        one port compare unless the socket is the watched port's.
 *        LISTEN -> SYN_RECV: a child socket is created (the handshake
 *        completed); it is queued for accept() microseconds later:
 *        timestamped by address (queued). Into / out of ESTABLISHED: the
 *        per-port count (see established_enter for how it stays exact
 *        for sockets that predate the programs).
 *   syscalls:sys_exit_accept{,4}  accept() returned an fd: its socket's
 *        timestamp gives the accept wait.
 *   iter/tcp (run by user space at attach, and again when no listener is
 *        known) walks the namespace's TCP sockets once: it learns the
 *        port's listening sockets and, the first time, counts the
 *        ESTABLISHED sockets that existed before the tracepoint.
 *   The child's creation when its listener's queue is nearly full (and
 *   each accept while a queue is full) re-checks whether the learned
 *   listeners' accept queues are full (for sk_lookup, below).
 *   sk_lookup (per netns)           a packet looked for a listener on the
 *        port: a SYN (or, under SYN cookies, a cookie ACK). sock_diag
 *        lookups (no remote port) are not counted. A SYN that arrives
 *        while the queue is full is about to be dropped: the wake event.
 *   read_drops (run by user space through BPF_PROG_TEST_RUN at each
 *        sample) sums the learned listeners' drop counters (sk_drops:
 *        the kernel's per-listener count of what ListenDrops counts) and
 *        SYN queues (request sockets: the half-open connections).
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
/* How close to its limit a listener's accept queue must be for a child's
 * creation to re-read the listeners (see on_set_state). */
#define NEAR_FULL 4
#define EVENT_GAP_NS (10 * 1000 * 1000ULL)
#define RELEARN_GAP_NS (1000 * 1000 * 1000ULL)

/* Event kinds. */
#define EV_OVERFLOW 1
#define EV_RELEARN 2

/* Set by the loader: the watched namespace (inode) and port. */
volatile const __u32 watch_netns = 0;
volatile const __u16 watch_port = 0;

struct port_stats {
	__u64 syns;
	/* SYNs that arrived while an accept queue of the port was full. */
	__u64 syns_full;
	__u64 accepts;
	__u64 wait_sum_us;
	/* The port's sockets in ESTABLISHED: this CPU's share of the
	 * increments and decrements; only the sum over CPUs is meaningful. */
	__s64 established;
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

/* Children of the watched listener: socket address -> creation time, in a
 * set-associative cache (an array: its lookups are inlined, no helper call
 * and no lock per connection, which a hash map's update and lookup cost).
 * A socket's bucket is a hash of its address; a child takes the way that
 * holds its own address (a freed socket's memory reused), else an unused
 * way, else the one with the oldest time (accepted or abandoned children,
 * in practice). Entries are never deleted: the only way a socket of the
 * port reaches accept() is through its creation, which overwrites what a
 * freed socket left at its address. A waiting child's time is lost only if
 * more than QWAYS children wait at once in its bucket (with 4,096
 * waiting, about one bucket in 200,000). A way is claimed by
 * compare-and-exchange on its address, so two CPUs never fill the same
 * way at once. */
#define QWAYS 4
#define QBUCKET_BITS 14
#define QBUCKETS (1 << QBUCKET_BITS)

struct qslot {
	__u64 sk;
	__u64 ts;
};

struct qbucket {
	struct qslot way[QWAYS];
};

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, QBUCKETS);
	__type(key, __u32);
	__type(value, struct qbucket);
} queued SEC(".maps");

/* Per CPU, one slot per program kind (ADDR_*): addr's scratch. */
#define ADDR_STATE 0
#define ADDR_ACCEPT 1

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 2);
	__type(key, __u32);
	__type(value, __u64);
} scratch SEC(".maps");

/* addr returns p's address as a plain number: the verifier allows no
 * arithmetic (the bucket hash) on a pointer, but a pointer stored in a map
 * reads back as a number. The slot is per CPU and per program kind, and a
 * program never runs nested on one CPU (the kernel skips such a run), so
 * nothing overwrites it between the store and the load. 0 if the slot is
 * missing. */
static __always_inline __u64 addr(const void *p, __u32 slot)
{
	__u64 *v = bpf_map_lookup_elem(&scratch, &slot);

	if (!v)
		return 0;
	*(const void **)v = p;
	return *(volatile __u64 *)v;
}

static __always_inline struct qbucket *qbucket(__u64 key)
{
	__u32 i = ((__u32)key * 2654435761U) >> (32 - QBUCKET_BITS);

	return bpf_map_lookup_elem(&queued, &i);
}

/* qput records that child key was created (queued for accept) at now. */
static __always_inline void qput(__u64 key, __u64 now)
{
	struct qbucket *b = qbucket(key);
	__u64 old, oldest = ~0ULL;
	__u32 w, pick = 0;

	if (!b || !key)
		return;
	for (w = 0; w < QWAYS; w++) {
		if (b->way[w].sk == key) {
			b->way[w].ts = now;
			return;
		}
		if (b->way[w].ts < oldest) {
			oldest = b->way[w].ts;
			pick = w;
		}
	}
	/* The unused (time 0) or oldest way: claim it unless another CPU just
	 * did (then this child's wait is not measured: two creations in one
	 * bucket within nanoseconds). */
	pick &= QWAYS - 1;
	old = b->way[pick].sk;
	if (__sync_val_compare_and_swap(&b->way[pick].sk, old, key) == old)
		b->way[pick].ts = now;
}

/* qtake returns child key's creation time (0 if it was not recorded). It
 * only reads: a socket is accepted once, and a later socket at the same
 * address reaches accept() only through its own creation, which
 * overwrote the time. Not writing spares taking the bucket's cache line
 * from the CPU that wrote it. */
static __always_inline __u64 qtake(__u64 key)
{
	struct qbucket *b = qbucket(key);
	__u32 w;

	if (!b || !key)
		return 0;
	for (w = 0; w < QWAYS; w++) {
		if (b->way[w].sk == key)
			return b->way[w].ts;
	}
	return 0;
}

/* Per-socket flag: 1 while the socket is in the ESTABLISHED count (see
 * established_enter). Exchanged atomically, so the iterator and the
 * tracepoint never both count a socket. */
struct {
	__uint(type, BPF_MAP_TYPE_SK_STORAGE);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__type(key, int);
	__type(value, __u64);
} counted SEC(".maps");

/* Time of the last event of each kind (index = kind). */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 3);
	__type(key, __u32);
	__type(value, __u64);
} last_event SEC(".maps");

/* The watched port's listening sockets (v4, v6, SO_REUSEPORT groups) by
 * address; value: bit 0 set while that listener's accept queue is full,
 * bit 1 its family (IPv6), kept so that a listener pruned after it died
 * (its memory no longer readable as a socket) can still clear the full
 * count of its family. */
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

/* read_drops' answer: the summed sk_drops and SYN queue lengths of the
 * live listeners, how many there were, and how many dead ones it pruned
 * (user space then walks again: a restarted Valkey's new listening
 * socket may sit at a new address while another reuses an old one). */
struct listener_drops {
	__u64 drops;
	__u64 listeners;
	__u64 syn_queue;
	__u64 pruned;
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

/* watched, for a socket address read from a map (probe reads). */
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

static __always_inline void emit(__u32 kind, __u64 gap)
{
	struct event *e;
	__u64 now, *last;

	last = bpf_map_lookup_elem(&last_event, &kind);
	if (!last)
		return;
	now = bpf_ktime_get_ns();
	if (*last && now - *last < gap)
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

	if (now == (*was & 1))
		return;
	*was = (fam << 1) | now;
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
	__u32 init, *was;

	/* An MPTCP listener is two sockets; the TCP one queues and drops. */
	if (!sk || BPF_CORE_READ(sk, sk_protocol) != IPPROTO_TCP_ || !live(sk))
		return;
	was = bpf_map_lookup_elem(&listeners, &key);
	if (!was) {
		init = family_index(sk) << 1;
		bpf_map_update_elem(&listeners, &key, &init, BPF_NOEXIST);
		was = bpf_map_lookup_elem(&listeners, &key);
		if (!was)
			return;
	}
	refresh(sk, was, 0);
}

/* refresh_one's context: a child of this family is about to be queued
 * (family 0xff: none, after an accept); live counts the listeners seen. */
struct refresh_ctx {
	__u32 family;
	__u32 live;
};

static long refresh_one(void *map, __u64 *key, __u32 *was, struct refresh_ctx *c)
{
	const struct sock *sk = (const struct sock *)*key;

	if (!live(sk))
		return 0;
	c->live++;
	refresh(sk, was, c->family == BPF_CORE_READ(sk, __sk_common.skc_family) ? 1 : 0);
	return 0;
}

struct sum_ctx {
	struct listener_drops d;
};

static long sum_one(void *map, __u64 *key, __u32 *was, struct sum_ctx *c)
{
	const struct sock *sk = (const struct sock *)*key;
	const struct inet_connection_sock *icsk = (const struct inet_connection_sock *)sk;
	__u32 fam, *n;

	if (!live(sk)) {
		/* Closed since it was learned: forget it, and its full flag
		 * (only the run whose delete succeeds, if two race). The
		 * value is read first: a deleted element may be reused. */
		__u32 v = *was;

		if (bpf_map_delete_elem(map, key) == 0) {
			c->d.pruned++;
			fam = (v >> 1) & 1;
			n = bpf_map_lookup_elem(&full, &fam);
			if ((v & 1) && n && *n > 0)
				__sync_fetch_and_add(n, (__u32)-1);
		}
		return 0;
	}
	c->d.drops += (__u32)BPF_CORE_READ(sk, sk_drops.counter);
	c->d.syn_queue += (__u32)BPF_CORE_READ(icsk, icsk_accept_queue.qlen.counter);
	c->d.listeners++;
	return 0;
}

/* Run by user space (BPF_PROG_TEST_RUN) at each sample; never attached. */
SEC("raw_tracepoint")
int read_drops(struct bpf_raw_tracepoint_args *ctx)
{
	struct sum_ctx c = {};
	struct listener_drops *out;
	__u32 zero = 0;

	bpf_for_each_map_elem(&listeners, sum_one, &c, 0);
	out = bpf_map_lookup_elem(&drops, &zero);
	if (out)
		*out = c.d;
	return 0;
}

/* The ESTABLISHED count is exact however the sockets that predate the
 * programs change while they are being counted, at the price of a
 * per-socket flag (socket local storage) only while that can happen:
 *   walk_done == 0 (from attach until user space's first walk has ended):
 *     entering ESTABLISHED creates the socket's flag and counts it;
 *     leaving uncounts it only if its flag is set; the walk counts (and
 *     flags) the ESTABLISHED sockets not flagged yet. A socket that left
 *     ESTABLISHED before the walk saw it was never counted, and is not
 *     uncounted.
 *   walk_done == 1 (afterwards): every ESTABLISHED socket either has its
 *     flag set or entered ESTABLISHED since, so new sockets are counted
 *     with no flag, and a socket leaving ESTABLISHED is uncounted unless
 *     it has a flag that is already clear. No allocation per connection. */
volatile __u32 walk_done = 0;

static __always_inline void est_add(__s64 v)
{
	struct port_stats *st = port_stats();

	if (st)
		__sync_fetch_and_add(&st->established, v);
}

/* established_enter and established_leave: sk enters or leaves ESTABLISHED. */
static __always_inline void established_enter(struct sock *sk)
{
	__u64 *flag;

	if (walk_done) {
		est_add(1);
		return;
	}
	flag = bpf_sk_storage_get(&counted, sk, 0, BPF_SK_STORAGE_GET_F_CREATE);
	if (flag && __sync_lock_test_and_set(flag, 1) == 0)
		est_add(1);
}

static __always_inline void established_leave(struct sock *sk)
{
	__u64 *flag = 0;

	/* Sockets made after the first walk have no local storage (unless
	 * another BPF program gave them some): a plain load saves the
	 * helper call. */
	if (sk->sk_bpf_storage)
		flag = bpf_sk_storage_get(&counted, sk, 0, 0);

	if (flag) {
		if (__sync_lock_test_and_set(flag, 0) == 1)
			est_add(-1);
		return;
	}
	if (walk_done)
		est_add(-1);
}

SEC("tp_btf/inet_sock_set_state")
int BPF_PROG(on_set_state, struct sock *sk, int oldstate, int newstate)
{
	int child = oldstate == TCP_LISTEN && newstate == TCP_SYN_RECV;
	__u64 now;

	/* Fires for every TCP state change on the host. Only a child's
	 * creation and a move into or out of ESTABLISHED matter: the states
	 * (arguments, no memory read) first, then the port. */
	if (!child && newstate != TCP_ESTABLISHED && oldstate != TCP_ESTABLISHED)
		return 0;
	if (sk->__sk_common.skc_num != watch_port)
		return 0;
	if (sk->__sk_common.skc_net.net->ns.inum != watch_netns || sk->sk_protocol != IPPROTO_TCP_)
		return 0;
	if (newstate == TCP_ESTABLISHED)
		established_enter(sk);
	else if (oldstate == TCP_ESTABLISHED)
		established_leave(sk);
	if (!child)
		return 0;
	now = bpf_ktime_get_ns();
	qput(addr(sk, ADDR_STATE), now);
	/* The child is queued for accept() next: does that fill the queue?
	 * The child is a copy of its listener made a moment ago, queue
	 * fields included: its sk_ack_backlog is the listener's queue
	 * without it. Only when that is within NEAR_FULL of the limit are
	 * the listeners themselves read (children made at once on other
	 * CPUs hold the same copy: the margin covers them). */
	if (sk->sk_ack_backlog + NEAR_FULL <= sk->sk_max_ack_backlog)
		return 0;
	__u32 family = sk->__sk_common.skc_family;
	struct refresh_ctx rc = {.family = family};
	bpf_for_each_map_elem(&listeners, refresh_one, &rc, 0);
	/* A connection to the port and no listener known (Valkey restarted
	 * since the last walk): ask user space to walk again. */
	if (!rc.live)
		emit(EV_RELEARN, RELEARN_GAP_NS);
	return 0;
}

/* Run by user space in the watched namespace: learn the listeners and
 * count the sockets that predate the tracepoint. */
SEC("iter/tcp")
int walk(struct bpf_iter__tcp *ctx)
{
	struct sock_common *skc = ctx->sk_common;
	struct tcp_sock *tp;
	__u64 *flag;

	if (!skc || skc->skc_num != watch_port || skc->skc_net.net->ns.inum != watch_netns)
		return 0;
	if (skc->skc_state == TCP_LISTEN) {
		learn((const struct sock *)skc);
		return 0;
	}
	/* Later walks only relearn listeners: the count is kept by then. */
	if (walk_done || skc->skc_state != TCP_ESTABLISHED)
		return 0;
	/* NULL for request and TIME_WAIT sockets (not full sockets). */
	tp = bpf_skc_to_tcp_sock(skc);
	if (!tp)
		return 0;
	flag = bpf_sk_storage_get(&counted, tp, 0, BPF_SK_STORAGE_GET_F_CREATE);
	if (flag && __sync_lock_test_and_set(flag, 1) == 0)
		est_add(1);
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

/* fd_sock_probe follows accept()'s file descriptor to its socket
 * (current->files->fdt->fd[fd]->private_data->sk) with a probe read per
 * hop: the fallback for kernels without bpf_rdonly_cast (before 6.2). */
static __always_inline const struct sock *fd_sock_probe(long fd)
{
	struct task_struct *task = (struct task_struct *)bpf_get_current_task();
	struct fdtable *fdt = BPF_CORE_READ(task, files, fdt);
	struct file **fds, *f;
	struct socket *sock;

	if (!fdt || fd >= BPF_CORE_READ(fdt, max_fds))
		return 0;
	fds = BPF_CORE_READ(fdt, fd);
	if (bpf_probe_read_kernel(&f, sizeof(f), &fds[fd]) || !f)
		return 0;
	sock = BPF_CORE_READ(f, private_data);
	if (!sock)
		return 0;
	return BPF_CORE_READ(sock, sk);
}

/* A kfunc (6.2): the pointer typed as the kernel's type btf_id, for plain
 * loads (faulting loads the JIT makes safe) instead of a probe-read helper
 * call per field; the verifier inlines it to a register move. */
extern void *bpf_rdonly_cast(const void *obj, __u32 btf_id) __ksym;

/* fd_sock_fast is fd_sock_probe with plain loads: the current task as a
 * typed pointer, one probe read for the fd array's slot (an array of
 * pointers, which BTF does not type), casts for the untyped file->private_data. */
static __always_inline const struct sock *fd_sock_fast(long fd)
{
	struct task_struct *task = bpf_get_current_task_btf();
	struct fdtable *fdt = task->files->fdt;
	struct file *f;
	struct socket *sock;

	if (!fdt || fd >= fdt->max_fds)
		return 0;
	if (bpf_probe_read_kernel(&f, sizeof(f), &fdt->fd[fd]) || !f)
		return 0;
	f = bpf_rdonly_cast(f, bpf_core_type_id_kernel(struct file));
	sock = bpf_rdonly_cast(f->private_data, bpf_core_type_id_kernel(struct socket));
	if (!sock)
		return 0;
	return sock->sk;
}

static __always_inline int any_full(void)
{
	__u32 v4 = 0, v6 = 1, *n;

	n = bpf_map_lookup_elem(&full, &v4);
	if (n && *n)
		return 1;
	n = bpf_map_lookup_elem(&full, &v6);
	return n && *n;
}

/* accepted records the accept wait of sk, the socket accept() returned,
 * once the caller has checked it is of the watched port and namespace
 * (the namespace too: a socket of another namespace's listener on the same
 * port may sit at the address of a child of ours that was freed). */
static __always_inline int accepted(const struct sock *sk)
{
	struct port_stats *st;
	__u64 ts, wait, us, *mx;
	__u32 zero = 0, b;

	ts = qtake(addr(sk, ADDR_ACCEPT));
	if (!ts)
		return 0;
	wait = bpf_ktime_get_ns() - ts;
	/* accept() took one from a queue: a full one may no longer be. */
	if (any_full()) {
		struct refresh_ctx rc = {.family = 0xff};
		bpf_for_each_map_elem(&listeners, refresh_one, &rc, 0);
	}
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

/* Both accept exits fire for every accept() on the host, and for each
 * EAGAIN of a non-blocking accept loop: those return first. */
static __always_inline int accept_exit_fast(struct sys_exit_args *ctx)
{
	const struct sock *sk;

	if (ctx->ret < 0)
		return 0;
	sk = fd_sock_fast(ctx->ret);
	if (!sk)
		return 0;
	if (sk->__sk_common.skc_num != watch_port || sk->__sk_common.skc_net.net->ns.inum != watch_netns)
		return 0;
	return accepted(sk);
}

static __always_inline int accept_exit_probe(struct sys_exit_args *ctx)
{
	const struct sock *sk;

	if (ctx->ret < 0)
		return 0;
	sk = fd_sock_probe(ctx->ret);
	if (!sk)
		return 0;
	if (!watched(sk))
		return 0;
	return accepted(sk);
}

SEC("tracepoint/syscalls/sys_exit_accept4")
int on_accept4_exit(struct sys_exit_args *ctx)
{
	return accept_exit_fast(ctx);
}

SEC("tracepoint/syscalls/sys_exit_accept")
int on_accept_exit_plain(struct sys_exit_args *ctx)
{
	return accept_exit_fast(ctx);
}

/* The same without bpf_rdonly_cast; Open loads these when the kernel lacks it. */
SEC("tracepoint/syscalls/sys_exit_accept4")
int on_accept4_exit_probe(struct sys_exit_args *ctx)
{
	return accept_exit_probe(ctx);
}

SEC("tracepoint/syscalls/sys_exit_accept")
int on_accept_exit_plain_probe(struct sys_exit_args *ctx)
{
	return accept_exit_probe(ctx);
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
		emit(EV_OVERFLOW, EVENT_GAP_NS);
	}
	return SK_PASS;
}
