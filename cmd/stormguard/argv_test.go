package main

import (
	"os"
	"runtime"
	"testing"
)

func TestArgvPassword(t *testing.T) {
	tests := []struct{ arg, want string }{
		{"valkey://u:hunter2@h:1/3", "valkey://u:*******@h:1/3"},
		{"--valkey=valkeys://default:pw@10.0.0.5:6379?insecure=1", "--valkey=valkeys://default:**@10.0.0.5:6379?insecure=1"},
		{"--target=redis://secret@h", "--target=redis://******@h"},
		{"rediss://:p@ss@h:1", "rediss://:****@h:1"},
		{"valkey://h:1", "valkey://h:1"},
		{"127.0.0.1:6379", "127.0.0.1:6379"},
		{"http://u:p@h", "http://u:p@h"},
		{"--webhook=https://u:p@hooks.example.com", "--webhook=https://u:p@hooks.example.com"},
		{"--valkey", "--valkey"},
		{"valkey://h:1/path@x", "valkey://h:1/path@x"},
	}
	for _, tt := range tests {
		lo, hi := argvPassword(tt.arg)
		b := []byte(tt.arg)
		for i := lo; i < hi; i++ {
			b[i] = '*'
		}
		if string(b) != tt.want {
			t.Errorf("%q: masked %q, want %q", tt.arg, b, tt.want)
		}
	}
}

// TestHideArgvPasswords: the arguments keep the password for the command
// (os.Args gets copies) while the bytes the kernel shows are masked.
func TestHideArgvPasswords(t *testing.T) {
	saved := os.Args
	defer func() { os.Args = saved }()
	// Writable bytes, as the argv block is (a literal would be read-only).
	arg := string([]byte("valkey://u:hunter2@h:1"))
	os.Args = []string{"stormguard", "sample", "--valkey", arg}
	hideArgvPasswords()
	if os.Args[3] != "valkey://u:hunter2@h:1" {
		t.Fatalf("os.Args[3] = %q, want the address unchanged", os.Args[3])
	}
	if runtime.GOOS == "linux" && arg != "valkey://u:*******@h:1" {
		t.Fatalf("original argument bytes = %q, want the password masked", arg)
	}
}
