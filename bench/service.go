package main

import (
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"os"
	"os/user"
	"path/filepath"
	"strconv"
	"syscall"
)

// service is the account and private directory of a real server the bench
// runs as a DynaPM app (redis-server, postgres).
type service struct {
	dir  string
	user string // the app file's user:; "" when the bench is not root
	cred *syscall.Credential
}

// newService makes the server's directory under parent. A root bench runs
// the server as its Debian package's account, never as root: postgres
// refuses root, and a root redis-server would hand whoever reaches its
// port on the loopback the powers of root. The directory is the server's
// alone (0700).
func newService(parent, name, account string) (*service, error) {
	s := &service{dir: filepath.Join(parent, name)}
	if err := os.Mkdir(s.dir, 0o700); err != nil {
		return nil, err
	}
	if os.Geteuid() != 0 {
		return s, nil
	}
	u, err := user.Lookup(account)
	if err != nil {
		return nil, fmt.Errorf("the bench runs as root and %s must not: the account %q is missing (%w)", name, account, err)
	}
	uid, err1 := strconv.Atoi(u.Uid)
	gid, err2 := strconv.Atoi(u.Gid)
	if err1 != nil || err2 != nil {
		return nil, fmt.Errorf("account %q: uid %q, gid %q are not numbers", account, u.Uid, u.Gid)
	}
	if err := os.Chown(s.dir, uid, gid); err != nil {
		return nil, err
	}
	s.user = account
	s.cred = &syscall.Credential{Uid: uint32(uid), Gid: uint32(gid)}
	return s, nil
}

// writeFile writes a file of the service's own, readable by it alone.
func (s *service) writeFile(name, content string) (string, error) {
	path := filepath.Join(s.dir, name)
	if err := os.WriteFile(path, []byte(content), 0o600); err != nil {
		return "", err
	}
	if s.cred != nil {
		if err := os.Chown(path, int(s.cred.Uid), int(s.cred.Gid)); err != nil {
			return "", err
		}
	}
	return path, nil
}

// appExtra is the app file's lines that run the server as the service's
// account in its directory.
func (s *service) appExtra() string {
	extra := fmt.Sprintf("mode: persistent\ndir: %q\n", s.dir)
	if s.user != "" {
		extra += fmt.Sprintf("user: %q\n", s.user)
	}
	return extra
}

// secret is a random password for a server that other local users could
// reach on the loopback while the bench runs.
func secret() string {
	b := make([]byte, 16)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

// credAttr runs a command as the service's account (nil: as the bench).
func credAttr(s *service) *syscall.SysProcAttr {
	if s.cred == nil {
		return nil
	}
	return &syscall.SysProcAttr{Credential: s.cred}
}
