package lab

import (
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"os"
	"path/filepath"
)

// Setups are what each new connection can send before its first PING
// (Config.Setup):
//   - none: nothing (AUTH only when the target has a password);
//   - hello: HELLO 3 and CLIENT SETINFO lib-name/lib-ver, as client
//     libraries do by default;
//   - auth: HELLO 3 AUTH user pass and CLIENT SETNAME, as an application
//     with an ACL user and a connection name does.
var Setups = []string{"none", "hello", "auth"}

// labUser is the ACL user a spawned server gets for Setup auth.
const labUser = "stormguard-lab"

// labLib is the lib-name the lab's own clients send with Setup hello.
const labLib = "stormguard-lab"

// handshake returns the commands a lab-owned client sends on a new
// connection under the run's setup, in order; every reply must be OK.
func (r *run) handshake() [][]string {
	c := r.cfg
	switch c.Setup {
	case "hello":
		hello := []string{"HELLO", "3"}
		if c.Password != "" {
			hello = append(hello, "AUTH", userOrDefault(c.User), c.Password)
		}
		return [][]string{hello,
			{"CLIENT", "SETINFO", "LIB-NAME", labLib}, {"CLIENT", "SETINFO", "LIB-VER", "1"}}
	case "auth":
		return [][]string{{"HELLO", "3", "AUTH", userOrDefault(c.User), c.Password},
			{"CLIENT", "SETNAME", labLib}}
	}
	if c.Password == "" {
		return nil
	}
	if c.User != "" {
		return [][]string{{"AUTH", c.User, c.Password}}
	}
	return [][]string{{"AUTH", c.Password}}
}

func userOrDefault(u string) string {
	if u == "" {
		return "default"
	}
	return u
}

// aclFile writes an ACL file with the run's user and a fresh random
// password (0600, in a directory of its own, removed by close), so the
// password is never on a command line.
func (r *run) aclFile() (string, error) {
	b := make([]byte, 16)
	if _, err := rand.Read(b); err != nil {
		return "", fmt.Errorf("ACL user password: %w", err)
	}
	pass := hex.EncodeToString(b)
	dir, err := os.MkdirTemp("", "stormguard-lab-acl-")
	if err != nil {
		return "", fmt.Errorf("ACL file: %w", err)
	}
	r.onClose(func() { os.RemoveAll(dir) })
	path := filepath.Join(dir, "users.acl")
	// default stays as Valkey makes it (the admin connection uses it).
	body := "user default on nopass ~* &* +@all\nuser " + labUser + " on >" + pass + " ~* &* +@all\n"
	if err := os.WriteFile(path, []byte(body), 0o600); err != nil {
		return "", fmt.Errorf("ACL file: %w", err)
	}
	r.cfg.User, r.cfg.Password = labUser, pass
	r.aclPath = path
	return path, nil
}
