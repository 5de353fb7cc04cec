package main

import (
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/dynapm/dynapm/appfile"
	"github.com/dynapm/dynapm/internal/testutil"
	"github.com/dynapm/dynapm/internal/trust"
)

func TestUserAndGroupNeedARootDaemon(t *testing.T) {
	specs := []*appfile.Spec{
		{Name: "plain", File: "/apps/plain.yaml"},
		{Name: "web", File: "/apps/web.yaml", User: "www"},
		{Name: "db", File: "/apps/db.yaml", Group: "db"},
	}
	if errs := privilegeErrors(specs, 0); errs != nil {
		t.Fatalf("root daemon refused %v", errs)
	}
	errs := privilegeErrors(specs, 1000)
	if len(errs) != 2 {
		t.Fatalf("non-root daemon: %d errors, want 2: %v", len(errs), errs)
	}
	for i, want := range []string{"/apps/web.yaml: user: dynapm runs as uid 1000, not root", "/apps/db.yaml: group: dynapm runs as uid 1000"} {
		if got := errs[i].Err.Error(); !strings.Contains(got, want) {
			t.Errorf("error %q lacks %q", got, want)
		}
	}
}

func TestCheckAsRootRefusesWhatARootDaemonRefuses(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("the check is made when running as root")
	}
	apps := t.TempDir()
	good, loose := filepath.Join(apps, "good.yaml"), filepath.Join(apps, "loose.yaml")
	testutil.WriteFile(t, good, "listen: \"127.0.0.1:9001\"\ncommand: [\"true\"]\n")
	testutil.WriteFile(t, loose, "listen: \"127.0.0.1:9002\"\ncommand: [\"true\"]\n")
	if err := os.Chmod(loose, 0o664); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(apps, 0o757); err != nil {
		t.Fatal(err)
	}
	check := func(wantCode int, want ...string) string {
		t.Helper()
		var stdout, stderr bytes.Buffer
		code := dispatch([]string{"check", "-apps", apps}, &stdout, &stderr)
		out := stdout.String()
		if code != wantCode {
			t.Fatalf("check exit code = %d, want %d; output:\n%s%s", code, wantCode, out, &stderr)
		}
		for _, w := range want {
			if !strings.Contains(out, w) {
				t.Errorf("check output lacks %q:\n%s", w, out)
			}
		}
		return out
	}
	// The daemon's words: it refuses to start with exactly this error, and
	// reads no file from such a directory.
	c := trust.New()
	out := check(1, c.Dir(apps, "apps directory").Error()+"\n", "apps directory "+apps+" is writable", "chmod go-w "+apps, "1 problem(s)")
	if strings.Contains(out, good) || strings.Contains(out, loose) {
		t.Errorf("check judges the files of a directory the daemon would not read:\n%s", out)
	}

	// The directory fixed, the file: the watcher reports exactly this.
	if err := os.Chmod(apps, 0o755); err != nil {
		t.Fatal(err)
	}
	_, fileErr := c.AppFile(loose)
	out = check(1, (&appfile.FieldError{File: loose, Msg: fileErr.Error()}).Error()+"\n", "chmod go-w "+loose, "1 problem(s); 1 app file(s) valid")
	if strings.Contains(out, good) {
		t.Errorf("check blames good.yaml:\n%s", out)
	}

	// Fixed modes pass.
	if err := os.Chmod(loose, 0o644); err != nil {
		t.Fatal(err)
	}
	check(0, "ok: 2 app file(s) valid")
}

func TestRootRefusesAnAppFileItDoesNotOwnUnlessTheAppRunsAsItsOwner(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("the check is made by a daemon running as root")
	}
	dir := t.TempDir()
	owned, rootOwned := filepath.Join(dir, "web.yaml"), filepath.Join(dir, "root.yaml")
	testutil.WriteFile(t, owned, "")
	testutil.WriteFile(t, rootOwned, "")
	testutil.ChownNobody(t, owned)
	for _, tc := range []struct {
		name string
		spec appfile.Spec
		// field and want describe the refusal; want "" means accepted.
		field, want string
	}{
		{"root's file", appfile.Spec{File: rootOwned}, "", ""},
		{"runs as its owner", appfile.Spec{File: owned, User: "nobody"}, "", ""},
		{"runs as its owner's uid", appfile.Spec{File: owned, User: "65534"}, "", ""},
		{"runs as its owner with its group", appfile.Spec{File: owned, User: "nobody", Group: "65534"}, "", ""},
		{"no user", appfile.Spec{File: owned},
			"", "owned by nobody (uid 65534), not root, and dynapm runs as root: nobody (uid 65534) could make root run anything; fix it with: chown root " + owned + ", or set user: nobody"},
		{"another user", appfile.Spec{File: owned, User: "root"},
			"user", "the app would run as uid 0, not as the file's owner; fix it with: chown root " + owned + ", or set user: nobody"},
		{"a group its owner is not in", appfile.Spec{File: owned, User: "nobody", Group: "0"},
			"group", "gid 0, which is not one of nobody (uid 65534)'s groups"},
		{"an unknown user", appfile.Spec{File: owned, User: "no-such-user-here"}, "user", `looking up user "no-such-user-here"`},
		{"a driver acting as root", appfile.Spec{File: owned, User: "nobody", Driver: appfile.DriverCommand},
			"driver", "driver: command acts as the daemon's user (root)"},
		{"jobs, which run as its user too", appfile.Spec{File: owned, User: "nobody", Jobs: []appfile.Job{{Command: []string{"true"}}}}, "", ""},
		{"a unix: listen, whose file root makes", appfile.Spec{File: owned, User: "nobody", Listen: []string{"unix:/run/web.sock"}},
			"listen", "a unix: listen address has root make and remove a socket file where nobody (uid 65534) says"},
		{"a unix: listen in root's file", appfile.Spec{File: rootOwned, Listen: []string{"unix:/run/web.sock"}}, "", ""},
		{"a unix: upstream, dialed only if its user listens", appfile.Spec{File: owned, User: "nobody", Upstream: "unix:/home/nobody/web.sock"}, "", ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := ownerError(&tc.spec, trust.Checker{UID: 0})
			if tc.want == "" {
				if err != nil {
					t.Fatalf("refused: %v", err)
				}
				return
			}
			var fe *appfile.FieldError
			if !errors.As(err, &fe) || fe.File != tc.spec.File || fe.Field != tc.field || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("error %v (field %q); want on field %q of %s: %q", err, fieldOf(fe), tc.field, tc.spec.File, tc.want)
			}
		})
	}
}

func fieldOf(fe *appfile.FieldError) string {
	if fe == nil {
		return "<none>"
	}
	return fe.Field
}

// The attack: a user who can change an app file that root's own symlink
// leads to (in a directory of theirs), or who owns the symlink, makes it
// theirs: it runs only as them. A daemon that is not root trusts its own
// user's files and root's, nobody else's.
func TestAnAppFileIsWhoeverCanChangeItsTarget(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("giving files to other users needs root")
	}
	base := t.TempDir()
	apps, home := filepath.Join(base, "apps"), filepath.Join(base, "home")
	for _, d := range []string{apps, home} {
		if err := os.Mkdir(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	testutil.ChownNobody(t, home)
	target := filepath.Join(home, "web.yaml")
	testutil.WriteFile(t, target, "") // root's file, in nobody's directory
	link := filepath.Join(apps, "web.yaml")
	if err := os.Symlink(target, link); err != nil {
		t.Fatal(err)
	}
	root := trust.Checker{UID: 0}
	err := ownerError(&appfile.Spec{File: link}, root)
	if want := link + ": app file can be changed by nobody (uid 65534), who owns " + home + ", not root, and dynapm runs as root: nobody (uid 65534) could make root run anything; fix it with: chown root " + home + " (or copy the file into the apps directory), or set user: nobody to run the app as its owner"; err == nil || err.Error() != want {
		t.Fatalf("root's symlink into nobody's directory:\n got %v\nwant %s", err, want)
	}
	if err := ownerError(&appfile.Spec{File: link, User: "nobody"}, root); err != nil {
		t.Fatalf("the same file for an app running as nobody: %v", err)
	}

	// nobody's own symlink, to root's file.
	rootFile := filepath.Join(apps, "root.yaml")
	testutil.WriteFile(t, rootFile, "")
	theirLink := filepath.Join(apps, "theirs.yaml")
	if err := os.Symlink(rootFile, theirLink); err != nil {
		t.Fatal(err)
	}
	if err := os.Lchown(theirLink, testutil.Nobody, testutil.Nobody); err != nil {
		t.Fatal(err)
	}
	if err := ownerError(&appfile.Spec{File: theirLink}, root); err == nil || !strings.Contains(err.Error(), "can be changed by nobody (uid 65534), who owns "+theirLink) {
		t.Fatalf("nobody's symlink to root's file: %v", err)
	}

	// A daemon running as nobody.
	asNobody := trust.Checker{UID: testutil.Nobody}
	if err := ownerError(&appfile.Spec{File: link}, asNobody); err != nil {
		t.Fatalf("nobody's daemon, nobody's directory: %v", err)
	}
	if err := os.Chown(target, 12345, 12345); err != nil {
		t.Fatal(err)
	}
	err = ownerError(&appfile.Spec{File: rootFile}, asNobody)
	if err != nil {
		t.Fatalf("nobody's daemon, root's file: %v", err)
	}
	other := filepath.Join(apps, "other.yaml")
	testutil.WriteFile(t, other, "")
	if err := os.Chown(other, 12345, 12345); err != nil {
		t.Fatal(err)
	}
	err = ownerError(&appfile.Spec{File: other}, asNobody)
	if want := other + ": app file is owned by uid 12345, neither root nor nobody (uid 65534), whom dynapm runs as: uid 12345 could make dynapm run anything as nobody (uid 65534); fix it with: chown nobody " + other; err == nil || err.Error() != want {
		t.Fatalf("nobody's daemon, another user's file:\n got %v\nwant %s", err, want)
	}
}
