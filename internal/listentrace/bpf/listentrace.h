/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * The few kernel types listentrace.c reads, declared by hand instead of a
 * generated vmlinux.h (megabytes). preserve_access_index makes every field
 * access a CO-RE relocation: the loader finds each field's offset in the
 * running kernel's BTF (/sys/kernel/btf/vmlinux), so these declarations
 * only have to name the fields, not match the kernel's layout.
 */
#ifndef LISTENTRACE_H
#define LISTENTRACE_H

#include <linux/types.h>
#include <linux/bpf.h>

typedef _Bool bool;

struct ns_common {
	unsigned int inum;
} __attribute__((preserve_access_index));

struct net {
	struct ns_common ns;
} __attribute__((preserve_access_index));

typedef struct {
	struct net *net;
} possible_net_t;

struct sock_common {
	unsigned short skc_family;
	volatile unsigned char skc_state;
	__u16 skc_num;
	possible_net_t skc_net;
} __attribute__((preserve_access_index));

typedef struct {
	int counter;
} atomic_t;

struct bpf_local_storage;

struct sock {
	struct sock_common __sk_common;
	__u16 sk_protocol;
	struct bpf_local_storage *sk_bpf_storage;
	atomic_t sk_drops;
	__u32 sk_ack_backlog;
	__u32 sk_max_ack_backlog;
} __attribute__((preserve_access_index));

struct request_sock_queue {
	atomic_t qlen;
} __attribute__((preserve_access_index));

struct inet_connection_sock {
	struct request_sock_queue icsk_accept_queue;
} __attribute__((preserve_access_index));

struct tcp_sock {
	struct inet_connection_sock inet_conn;
} __attribute__((preserve_access_index));

struct bpf_iter_meta {
	void *seq;
} __attribute__((preserve_access_index));

struct bpf_iter__tcp {
	struct bpf_iter_meta *meta;
	struct sock_common *sk_common;
	unsigned int uid;
} __attribute__((preserve_access_index));

struct net_device {
	possible_net_t nd_net;
} __attribute__((preserve_access_index));

struct sk_buff {
	struct net_device *dev;
	__u16 transport_header;
	unsigned char *head;
} __attribute__((preserve_access_index));

struct socket {
	struct sock *sk;
} __attribute__((preserve_access_index));

struct file {
	void *private_data;
} __attribute__((preserve_access_index));

struct fdtable {
	unsigned int max_fds;
	struct file **fd;
} __attribute__((preserve_access_index));

struct files_struct {
	struct fdtable *fdt;
} __attribute__((preserve_access_index));

struct task_struct {
	struct files_struct *files;
} __attribute__((preserve_access_index));

enum skb_drop_reason {
	SKB_DROP_REASON_TCP_LISTEN_OVERFLOW = 40,
};

#endif
