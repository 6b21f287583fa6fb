package lab

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"strconv"
)

// The lab's own strategies speak RESP by hand: their clients are the storm
// generator, kept to a write and a read per command so the lab out-dials
// valkey-benchmark; they are the simulated application, not a tool's
// connection. The admin connection (CLIENT KILL, INFO, DEBUG SLEEP) goes
// through valkeyconn like every other connection stormguard makes.

// reply is one RESP reply as the lab needs it: its type byte and either
// the line (simple string, error, integer) or the bulk payload.
type reply struct {
	kind byte // '+', '-', ':', '$', '*', '_' …
	line string
	bulk []byte
	n    int64 // integer value, or array length
}

// maxBulk bounds a bulk reply the lab will read (INFO is a few KiB).
const maxBulk = 1 << 20

var errProtocol = errors.New("bad RESP reply")

// readReply reads one reply. Arrays are read element by element and
// discarded (the lab never needs them); their length is in n.
func readReply(r *bufio.Reader) (reply, error) {
	line, err := r.ReadSlice('\n')
	if err != nil {
		return reply{}, err
	}
	if len(line) < 3 || line[len(line)-2] != '\r' {
		return reply{}, fmt.Errorf("%w: %q", errProtocol, truncate(line))
	}
	rp := reply{kind: line[0], line: string(line[1 : len(line)-2])}
	switch rp.kind {
	case '+', '-', '_', ',', '#', '(':
		return rp, nil
	case ':':
		n, err := strconv.ParseInt(rp.line, 10, 64)
		if err != nil {
			return reply{}, fmt.Errorf("%w: integer %q", errProtocol, rp.line)
		}
		rp.n = n
		return rp, nil
	case '$', '=', '!':
		n, err := strconv.ParseInt(rp.line, 10, 64)
		if err != nil || n < -1 || n > maxBulk {
			return reply{}, fmt.Errorf("%w: bulk length %q", errProtocol, rp.line)
		}
		rp.n = n
		if n < 0 {
			return rp, nil
		}
		buf := make([]byte, n+2)
		if _, err := io.ReadFull(r, buf); err != nil {
			return reply{}, err
		}
		if !bytes.HasSuffix(buf, []byte("\r\n")) {
			return reply{}, fmt.Errorf("%w: bulk not terminated", errProtocol)
		}
		rp.bulk = buf[:n]
		return rp, nil
	case '*', '%', '~', '>':
		n, err := strconv.ParseInt(rp.line, 10, 64)
		if err != nil || n < -1 || n > 1<<16 {
			return reply{}, fmt.Errorf("%w: aggregate length %q", errProtocol, rp.line)
		}
		rp.n = n
		if rp.kind == '%' {
			n *= 2
		}
		for i := int64(0); i < n; i++ {
			if _, err := readReply(r); err != nil {
				return reply{}, err
			}
		}
		return rp, nil
	}
	return reply{}, fmt.Errorf("%w: type %q", errProtocol, rp.kind)
}

func truncate(b []byte) []byte {
	if len(b) > 64 {
		return b[:64]
	}
	return b
}

// appendCommand encodes args as a RESP array.
func appendCommand(dst []byte, args ...string) []byte {
	dst = append(dst, '*')
	dst = strconv.AppendInt(dst, int64(len(args)), 10)
	dst = append(dst, '\r', '\n')
	for _, a := range args {
		dst = append(dst, '$')
		dst = strconv.AppendInt(dst, int64(len(a)), 10)
		dst = append(dst, '\r', '\n')
		dst = append(dst, a...)
		dst = append(dst, '\r', '\n')
	}
	return dst
}

// infoCounters keeps the numeric fields of parsed INFO
// (valkeyconn.ParseInfo).
func infoCounters(info map[string]string) map[string]uint64 {
	out := make(map[string]uint64)
	for k, v := range info {
		if n, err := strconv.ParseUint(v, 10, 64); err == nil {
			out[k] = n
		}
	}
	return out
}
