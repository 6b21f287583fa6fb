package valkeyconn

import "strings"

// ParseInfo parses the text of an INFO reply into key → value. Lines are
// "key:value" (split at the first colon, as values such as executable paths
// may hold more); "# Section" headers, blank lines and lines without a colon
// are skipped. Both CRLF and LF line ends are accepted, as is the "txt:"
// prefix of a RESP3 verbatim string. When a key repeats, the first value
// wins.
func ParseInfo(text string) map[string]string {
	text = strings.TrimPrefix(text, "txt:")
	m := make(map[string]string, 128)
	for len(text) > 0 {
		var line string
		if i := strings.IndexByte(text, '\n'); i >= 0 {
			line, text = text[:i], text[i+1:]
		} else {
			line, text = text, ""
		}
		line = strings.TrimRight(line, "\r")
		if line == "" || line[0] == '#' {
			continue
		}
		k, v, ok := strings.Cut(line, ":")
		if !ok || k == "" {
			continue
		}
		if _, dup := m[k]; !dup {
			m[k] = v
		}
	}
	return m
}

// Host strips the port from a CLIENT LIST addr (ip:port, [v6]:port, v6:port
// or a unix socket path).
func Host(addr string) string {
	i := strings.LastIndex(addr, ":")
	if i <= 0 {
		return addr
	}
	return strings.Trim(addr[:i], "[]")
}
