// Package clientlist parses Valkey's CLIENT LIST reply and groups the
// clients by library (CLIENT SETINFO lib-name/lib-ver) and by source IP, so
// an operator can tell which application fleet holds or opens the
// connections. It is pure: the valkey source takes the reply over its
// reserved connection, only when calm (docs/design.md).
package clientlist
