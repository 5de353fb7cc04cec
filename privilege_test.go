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
	var stdout, stderr bytes.Buffer
	code := dispatch([]string{"check", "-apps", apps}, &stdout, &stderr)
	if code != 1 {
		t.Fatalf("check exit code = %d, want 1; output:\n%s%s", code, &stdout, &stderr)
	}
	out := stdout.String()
	// The daemon's words: the watcher reports exactly these errors.
	for _, path := range []string{apps, loose} {
		want := appfile.CheckNotWritableByOthers(path).Error()
		if !strings.Contains(out, want+"\n") {
			t.Errorf("check output lacks %q:\n%s", want, out)
		}
	}
	if !strings.Contains(out, "chmod go-w "+loose) || !strings.Contains(out, "apps directory is writable") {
		t.Errorf("check output does not say how to fix both:\n%s", out)
	}
	if strings.Contains(out, good) {
		t.Errorf("check blames good.yaml:\n%s", out)
	}
	if !strings.Contains(out, "2 problem(s); 1 app file(s) valid") {
		t.Errorf("check summary wrong:\n%s", out)
	}

	// Fixed modes pass.
	if err := os.Chmod(loose, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(apps, 0o755); err != nil {
		t.Fatal(err)
	}
	stdout.Reset()
	if code := dispatch([]string{"check", "-apps", apps}, &stdout, &stderr); code != 0 {
		t.Fatalf("check after fixing the modes exit code = %d; output:\n%s", code, &stdout)
	}
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
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := ownerError(&tc.spec)
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
