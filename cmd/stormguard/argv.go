package main

import "strings"

// argvPassword returns where the password of a Valkey address in one
// command-line argument is (arg[lo:hi]; lo == hi when there is none):
// the argument, or its value after "--flag=", is
// valkey[s]://[user:]password@host… or redis[s]://… . A lone userinfo
// (valkey://secret@host) is the password, as the address parser reads it.
func argvPassword(arg string) (lo, hi int) {
	start := 0
	if strings.HasPrefix(arg, "-") {
		eq := strings.IndexByte(arg, '=')
		if eq < 0 {
			return 0, 0
		}
		start = eq + 1
	}
	rest := arg[start:]
	scheme, after, ok := strings.Cut(rest, "://")
	if !ok {
		return 0, 0
	}
	switch strings.ToLower(scheme) {
	case "valkey", "valkeys", "redis", "rediss":
	default:
		return 0, 0
	}
	base := start + len(scheme) + len("://")
	auth := after
	if end := strings.IndexAny(auth, "/?#"); end >= 0 {
		auth = auth[:end]
	}
	at := strings.LastIndexByte(auth, '@')
	if at < 0 {
		return 0, 0
	}
	userinfo := auth[:at]
	if c := strings.IndexByte(userinfo, ':'); c >= 0 {
		return base + c + 1, base + at
	}
	return base, base + at
}
