//go:build linux

package checklist

import (
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/mdlayher/netlink"
	"github.com/safchain/ethtool"
	"golang.org/x/sys/unix"

	"github.com/stormguard/stormguard/internal/netns"
)

// ctnetlink constants (linux/netfilter/nfnetlink_conntrack.h).
const (
	nfnlSubsysCTNetlink = 1
	ipctnlMsgCTGet      = 1
	ctaTupleOrig        = 1
	ctaTupleIP          = 1
	ctaTupleProto       = 2
	ctaIPv4Src          = 1
	ctaIPv4Dst          = 2
	ctaIPv6Src          = 3
	ctaIPv6Dst          = 4
	ctaProtoNum         = 1
	ctaProtoSrcPort     = 2
	ctaProtoDstPort     = 3
)

// conntrackTracked looks up the conntrack entry of this audit's own
// connection with one ctnetlink IPCTNL_MSG_CT_GET (not a table dump).
func conntrackTracked(ns string, local, remote net.Addr) (bool, error) {
	l, ok1 := local.(*net.TCPAddr)
	r, ok2 := remote.(*net.TCPAddr)
	if !ok1 || !ok2 {
		return false, errors.New("no TCP connection to look up")
	}
	req, err := ctGetRequest(l, r)
	if err != nil {
		return false, err
	}
	var tracked bool
	err = netns.Do(ns, func() error {
		var err error
		tracked, err = ctQuery(req)
		return err
	})
	if err != nil {
		return false, errors.New(describe(err))
	}
	return tracked, nil
}

// ctQuery sends one CT_GET on a raw netlink socket and reads one reply. A
// found entry comes back as a single IPCTNL_MSG_CT_NEW flagged NLM_F_MULTI
// with no NLMSG_DONE, which makes mdlayher/netlink (and ti-mo/conntrack's
// Get) wait forever for the rest of a multi-part reply.
func ctQuery(req netlink.Message) (bool, error) {
	fd, err := unix.Socket(unix.AF_NETLINK, unix.SOCK_RAW|unix.SOCK_CLOEXEC, unix.NETLINK_NETFILTER)
	if err != nil {
		return false, fmt.Errorf("open ctnetlink: %w", err)
	}
	defer unix.Close(fd)
	if err := unix.Bind(fd, &unix.SockaddrNetlink{Family: unix.AF_NETLINK}); err != nil {
		return false, fmt.Errorf("bind ctnetlink: %w", err)
	}
	tv := unix.NsecToTimeval((2 * time.Second).Nanoseconds())
	if err := unix.SetsockoptTimeval(fd, unix.SOL_SOCKET, unix.SO_RCVTIMEO, &tv); err != nil {
		return false, fmt.Errorf("ctnetlink timeout: %w", err)
	}
	req.Header.Sequence = uint32(time.Now().UnixNano())
	req.Header.Length = uint32(unix.NLMSG_HDRLEN + len(req.Data))
	b, err := req.MarshalBinary()
	if err != nil {
		return false, err
	}
	if err := unix.Sendto(fd, b, 0, &unix.SockaddrNetlink{Family: unix.AF_NETLINK}); err != nil {
		return false, fmt.Errorf("send conntrack lookup: %w", err)
	}
	buf := make([]byte, 8192)
	for {
		n, _, err := unix.Recvfrom(fd, buf, 0)
		if err != nil {
			return false, fmt.Errorf("read conntrack lookup: %w", err)
		}
		tracked, done, err := parseCTReply(buf[:n], req.Header.Sequence)
		if done || err != nil {
			return tracked, err
		}
	}
}

// parseCTReply reads one datagram answering a CT_GET with sequence seq:
// a CT_NEW message means the entry exists, NLMSG_ERROR ENOENT that it does
// not. done is false for messages that answer something else.
func parseCTReply(b []byte, seq uint32) (tracked, done bool, err error) {
	var msgs []netlink.Message
	for len(b) >= unix.NLMSG_HDRLEN {
		l := int(binary.NativeEndian.Uint32(b[:4]))
		if l < unix.NLMSG_HDRLEN || l > len(b) {
			return false, true, errors.New("malformed netlink reply")
		}
		var m netlink.Message
		if err := m.UnmarshalBinary(b[:l]); err != nil {
			return false, true, fmt.Errorf("parse netlink reply: %w", err)
		}
		msgs = append(msgs, m)
		b = b[min(len(b), (l+unix.NLMSG_ALIGNTO-1)&^(unix.NLMSG_ALIGNTO-1)):]
	}
	for _, m := range msgs {
		if m.Header.Sequence != seq {
			continue
		}
		switch m.Header.Type {
		case netlink.Error:
			if len(m.Data) < 4 {
				return false, true, errors.New("short netlink error")
			}
			errno := -int32(binary.NativeEndian.Uint32(m.Data[:4]))
			switch {
			case errno == 0:
				return false, true, nil
			case unix.Errno(errno) == unix.ENOENT:
				return false, true, nil
			}
			return false, true, fmt.Errorf("kernel refused the conntrack lookup: %w", unix.Errno(errno))
		case netlink.Done:
			return false, true, nil
		default:
			if m.Header.Type>>8 == nfnlSubsysCTNetlink {
				return true, true, nil
			}
		}
	}
	return false, false, nil
}

// ctGetRequest encodes IPCTNL_MSG_CT_GET for the original tuple local→remote.
func ctGetRequest(l, r *net.TCPAddr) (netlink.Message, error) {
	la, _ := netip.AddrFromSlice(l.IP)
	ra, _ := netip.AddrFromSlice(r.IP)
	la, ra = la.Unmap(), ra.Unmap()
	family, src, dst := uint8(unix.AF_INET), uint16(ctaIPv4Src), uint16(ctaIPv4Dst)
	if la.Is6() || ra.Is6() {
		la, ra = netip.AddrFrom16(la.As16()), netip.AddrFrom16(ra.As16())
		family, src, dst = unix.AF_INET6, ctaIPv6Src, ctaIPv6Dst
	}
	ae := netlink.NewAttributeEncoder()
	ae.Nested(ctaTupleOrig, func(ae *netlink.AttributeEncoder) error {
		ae.Nested(ctaTupleIP, func(ae *netlink.AttributeEncoder) error {
			ae.Bytes(src, la.AsSlice())
			ae.Bytes(dst, ra.AsSlice())
			return nil
		})
		ae.Nested(ctaTupleProto, func(ae *netlink.AttributeEncoder) error {
			ae.Uint8(ctaProtoNum, unix.IPPROTO_TCP)
			ae.Bytes(ctaProtoSrcPort, binary.BigEndian.AppendUint16(nil, uint16(l.Port)))
			ae.Bytes(ctaProtoDstPort, binary.BigEndian.AppendUint16(nil, uint16(r.Port)))
			return nil
		})
		return nil
	})
	attrs, err := ae.Encode()
	if err != nil {
		return netlink.Message{}, fmt.Errorf("encode conntrack tuple: %w", err)
	}
	// nfgenmsg: family, version 0, res_id 0.
	data := append([]byte{family, 0, 0, 0}, attrs...)
	return netlink.Message{
		Header: netlink.Header{Type: netlink.HeaderType(nfnlSubsysCTNetlink<<8 | ipctnlMsgCTGet), Flags: netlink.Request},
		Data:   data,
	}, nil
}

// sameNetNS checks that pid exists here and lives in the namespace ns
// ("" = ours).
func sameNetNS(pid int, ns string) error {
	if ns == "" {
		ns = "/proc/self/ns/net"
	}
	want, err := os.Stat(ns)
	if err != nil {
		return err
	}
	got, err := os.Stat(filepath.Join("/proc", strconv.Itoa(pid), "ns", "net"))
	if err != nil {
		return fmt.Errorf("not visible here (another pid namespace?): %w", err)
	}
	ws, ok1 := want.Sys().(*syscall.Stat_t)
	gs, ok2 := got.Sys().(*syscall.Stat_t)
	if !ok1 || !ok2 || ws.Ino != gs.Ino || ws.Dev != gs.Dev {
		return errors.New("that pid is in another network namespace (a different server)")
	}
	return nil
}

// readNIC reads ENA allowance counters of the interfaces in stormguard's
// own namespace: the hypervisor counts on the host's NIC, not inside a
// container's namespace.
func readNIC(f *Facts) {
	ifs, err := net.Interfaces()
	if err != nil {
		f.NICErr = "list interfaces: " + err.Error()
		return
	}
	e, err := ethtool.NewEthtool()
	if err != nil {
		f.NICErr = "open ethtool socket: " + describe(err)
		return
	}
	defer e.Close()
	nic := &NICFacts{Stats: map[string]uint64{}}
	var tried []string
	for _, i := range ifs {
		if i.Flags&net.FlagLoopback != 0 {
			continue
		}
		tried = append(tried, i.Name)
		st, err := e.Stats(i.Name)
		if err != nil {
			continue
		}
		found := false
		for _, k := range NICCounterNames {
			if v, ok := st[k]; ok {
				nic.Stats[k] += v
				found = true
			}
		}
		if found {
			nic.Interfaces = append(nic.Interfaces, i.Name)
		}
	}
	if len(nic.Interfaces) == 0 {
		sort.Strings(tried)
		where := "no interface besides loopback"
		if len(tried) > 0 {
			where = "none of " + strings.Join(tried, ", ")
		}
		f.NICErr = "not available: " + where + " exposes ENA allowance counters (ethtool -S); not an AWS ENA NIC, or the driver is older than 2.2.10"
		return
	}
	f.NIC = nic
}
