package cgroup

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"golang.org/x/sys/unix"
)

func TestGroupNames(t *testing.T) {
	for _, n := range []string{"web", "web@1", "a_b-c@cron-nightly", "0", strings.Repeat("a", 255)} {
		if err := validName(n); err != nil {
			t.Errorf("validName(%q) = %v, want nil", n, err)
		}
	}
	bad := []string{"", ".", "..", "a/b", "../x", "Web", "web@", "web@@1", "web@1@2", "a.b",
		"cgroup.procs", DaemonLeaf, "-x", "_x", "@1", "a b", "a\nb", strings.Repeat("a", 256)}
	for _, n := range bad {
		err := validName(n)
		if err == nil || !strings.Contains(err.Error(), fmt.Sprintf("%q", n)) || !strings.Contains(err.Error(), nameRule) {
			t.Errorf("validName(%q) = %v, want an error naming it and the rule", n, err)
		}
	}
}

func TestOpenRefusesABadSubtreeName(t *testing.T) {
	_, err := Open(Config{Name: "../etc", procRoot: t.TempDir()})
	if err == nil || errors.Is(err, ErrUnavailable) || !strings.Contains(err.Error(), `"../etc"`) {
		t.Fatalf("Open with name ../etc = %v, want a name error (not ErrUnavailable)", err)
	}
}

func TestCreateAndOpenRefuseBadNames(t *testing.T) {
	s := openTest(t)
	for _, n := range []string{"../escape", "a/b", "cgroup.kill"} {
		if _, err := s.Create(n); err == nil || !strings.Contains(err.Error(), nameRule) {
			t.Errorf("Create(%q) = %v, want a name error", n, err)
		}
		if _, err := s.Open(n); err == nil || !strings.Contains(err.Error(), nameRule) {
			t.Errorf("Open(%q) = %v, want a name error", n, err)
		}
	}
	if _, err := os.Stat(filepath.Join(filepath.Dir(s.Path()), "escape")); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("a bad name made a directory outside the subtree: %v", err)
	}
}

// fakeProc makes a proc root holding the given files under self/.
func fakeProc(t *testing.T, files map[string]string) string {
	t.Helper()
	root := t.TempDir()
	if err := os.Mkdir(filepath.Join(root, "self"), 0o755); err != nil {
		t.Fatal(err)
	}
	for name, data := range files {
		if err := os.WriteFile(filepath.Join(root, "self", name), []byte(data), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return root
}

const v1Mounts = `32 31 0:29 / /sys/fs/cgroup/cpu rw,relatime - cgroup cgroup rw,cpu
35 31 0:32 / /sys/fs/cgroup/memory rw,relatime - cgroup cgroup rw,memory
`

func cgroup2At(point string) string {
	return v1Mounts + "41 31 0:38 / " + point + " rw,relatime shared:9 - cgroup2 cgroup2 rw\n"
}

func TestOpenUnavailable(t *testing.T) {
	tmp := t.TempDir()
	for _, c := range []struct {
		name  string
		files map[string]string
		want  string
	}{
		{"no mountinfo", nil, "self/mountinfo: no such file"},
		{"no cgroup2 mount", map[string]string{"mountinfo": v1Mounts, "cgroup": "0::/\n"}, "lists no cgroup2 mount"},
		{"no v2 line", map[string]string{"mountinfo": cgroup2At("/sys/fs/cgroup"), "cgroup": "4:memory:/x\n"}, "has no cgroup v2 line (0::)"},
		{"not cgroup2", map[string]string{"mountinfo": cgroup2At(tmp), "cgroup": "0::/\n"}, tmp + " is not a cgroup2 filesystem"},
	} {
		t.Run(c.name, func(t *testing.T) {
			s, err := Open(Config{procRoot: fakeProc(t, c.files)})
			if err == nil {
				s.Close()
				t.Fatal("Open succeeded")
			}
			if !errors.Is(err, ErrUnavailable) || !strings.Contains(err.Error(), c.want) {
				t.Fatalf("Open = %v, want ErrUnavailable saying %q", err, c.want)
			}
		})
	}
	if entries, err := os.ReadDir(tmp); err != nil || len(entries) != 0 {
		t.Fatalf("Open left %v (%v) in a directory that is not cgroup2", entries, err)
	}
}

func TestOpenDoesNotFollowASymlinkedMount(t *testing.T) {
	s := openTest(t) // a real cgroup2 mount to point at
	mnt, err := findMount("/proc/self/mountinfo")
	if err != nil {
		t.Fatal(err)
	}
	link := filepath.Join(t.TempDir(), "cg")
	if err := os.Symlink(mnt.point, link); err != nil {
		t.Fatal(err)
	}
	name := testName(t) + "-link"
	_, err = Open(Config{Name: name, procRoot: fakeProc(t, map[string]string{"mountinfo": cgroup2At(link), "cgroup": "0::/\n"})})
	if !errors.Is(err, ErrUnavailable) || !errors.Is(err, unix.ELOOP) {
		t.Fatalf("Open through a symlink = %v, want ErrUnavailable with ELOOP", err)
	}
	if _, err := os.Stat(filepath.Join(filepath.Dir(s.Path()), name)); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("Open through a symlink made its directory: %v", err)
	}
}

func TestOpenRefusesASubtreeOthersCanWrite(t *testing.T) {
	s := openTest(t)
	if os.Geteuid() != 0 {
		t.Skip("changing the subtree's owner needs root")
	}
	reopen := func(want string) {
		t.Helper()
		s2, err := Open(Config{Name: testName(t)})
		if err == nil {
			s2.Close()
		}
		if !errors.Is(err, ErrUnavailable) || !strings.Contains(err.Error(), want) {
			t.Fatalf("Open = %v, want ErrUnavailable saying %q", err, want)
		}
	}
	if err := os.Chmod(s.Path(), 0o775); err != nil {
		t.Fatal(err)
	}
	reopen(s.Path() + " is writable by group or others (mode 0775)")
	if err := os.Chmod(s.Path(), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Chown(s.Path(), 12345, 12345); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.Chown(s.Path(), 0, 0) })
	reopen(s.Path() + " is owned by uid 12345, not 0")
}

// TestDelegatedCgroup plays a daemon whose own cgroup systemd delegated:
// a fake /proc/self/cgroup names a real cgroup marked trusted.delegate.
// The test process really moves into the daemon's leaf, and back after.
func TestDelegatedCgroup(t *testing.T) {
	s0 := openTest(t)
	if os.Geteuid() != 0 {
		t.Skip("marking a cgroup delegated (trusted.delegate) needs root")
	}
	realMounts, err := os.ReadFile("/proc/self/mountinfo")
	if err != nil {
		t.Fatal(err)
	}
	mnt, err := findMount("/proc/self/mountinfo")
	if err != nil {
		t.Fatal(err)
	}
	realOwn, err := ownCgroup("/proc/self/cgroup")
	if err != nil {
		t.Fatal(err)
	}
	// "svc.service" is no group name: the test's subtree cleanup skips it.
	svc := filepath.Join(s0.Path(), "svc.service")
	if err := os.Mkdir(svc, 0o755); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		back := filepath.Join(mnt.point, realOwn, "cgroup.procs")
		if err := os.WriteFile(back, []byte(fmt.Sprint(os.Getpid())), 0); err != nil {
			t.Errorf("moving the test back to %s: %v", back, err)
		}
		for _, d := range []string{"web", DaemonLeaf, ""} {
			if err := unix.Rmdir(filepath.Join(svc, d)); err != nil && err != unix.ENOENT {
				t.Errorf("cleanup: %v", err)
			}
		}
	})
	proc := func(own string) string {
		return fakeProc(t, map[string]string{"mountinfo": string(realMounts), "cgroup": "0::" + own + "\n"})
	}
	svcCg := s0.cgPath + "/svc.service"

	// Not marked delegated: the named subtree in the mount's root.
	s1, err := Open(Config{Name: testName(t) + "-named", procRoot: proc(svcCg)})
	if err != nil {
		t.Fatal(err)
	}
	if s1.Delegated() || s1.Path() != filepath.Join(mnt.point, testName(t)+"-named") {
		t.Fatalf("an undelegated cgroup was used: delegated %v, path %s", s1.Delegated(), s1.Path())
	}
	destroySubtree(t, s1)

	if err := unix.Setxattr(svc, "trusted.delegate", []byte("1"), 0); err != nil {
		t.Fatal(err)
	}
	s, err := Open(Config{procRoot: proc(svcCg)})
	if err != nil {
		t.Fatal(err)
	}
	if !s.Delegated() || s.Path() != svc {
		t.Fatalf("delegated %v, path %s; want the delegated %s", s.Delegated(), s.Path(), svc)
	}
	if own, err := ownCgroup("/proc/self/cgroup"); err != nil || own != svcCg+"/"+DaemonLeaf {
		t.Fatalf("the daemon is in %q (%v), want its leaf %s/%s", own, err, svcCg, DaemonLeaf)
	}
	g, err := s.Create("web")
	if err != nil {
		t.Fatal(err)
	}
	g.Close()
	s.Close()

	// A daemon already in its leaf finds the same subtree.
	s, err = Open(Config{procRoot: proc(svcCg + "/" + DaemonLeaf)})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if !s.Delegated() || s.Path() != svc {
		t.Fatalf("from the leaf: delegated %v, path %s; want %s", s.Delegated(), s.Path(), svc)
	}
	if names, err := s.List(); err != nil || !slices.Equal(names, []string{"web"}) {
		t.Fatalf("List = %q, %v; want [web] (not the daemon's leaf)", names, err)
	}

	// Whoever can write a directory above the subtree could swap it.
	if err := os.Chmod(s0.Path(), 0o775); err != nil {
		t.Fatal(err)
	}
	defer os.Chmod(s0.Path(), 0o755)
	_, err = Open(Config{procRoot: proc(svcCg)})
	if want := s0.Path() + " is writable by group or others"; !errors.Is(err, ErrUnavailable) || !strings.Contains(err.Error(), want) {
		t.Fatalf("Open below a writable directory = %v, want ErrUnavailable saying %q", err, want)
	}
}

func TestFindMount(t *testing.T) {
	info := v1Mounts +
		`41 31 0:38 /lxc/c1 /sys/fs/cgroup\040x rw,relatime shared:9 master:2 - cgroup2 cgroup2 rw,nsdelegate
50 31 0:39 / /other rw - cgroup2 cgroup2 rw
`
	file := filepath.Join(t.TempDir(), "mountinfo")
	if err := os.WriteFile(file, []byte(info), 0o644); err != nil {
		t.Fatal(err)
	}
	m, err := findMount(file)
	if err != nil {
		t.Fatal(err)
	}
	if m.point != "/sys/fs/cgroup x" || m.root != "/lxc/c1" {
		t.Fatalf("findMount = %+v, want the first cgroup2 mount, unescaped", m)
	}
}

func TestUnder(t *testing.T) {
	for _, c := range []struct {
		root, p, rel string
		ok           bool
	}{
		{"/", "/a/b", "/a/b", true},
		{"/lxc", "/lxc/a", "/a", true},
		{"/lxc", "/lxc", "/", true},
		{"/lxc", "/lxcfoo", "", false},
		{"/lxc", "/", "", false},
	} {
		if rel, ok := under(c.root, c.p); rel != c.rel && c.ok || ok != c.ok {
			t.Errorf("under(%q, %q) = %q, %v; want %q, %v", c.root, c.p, rel, ok, c.rel, c.ok)
		}
	}
}
