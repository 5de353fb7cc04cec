package trust

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"github.com/dynapm/dynapm/internal/testutil"
)

// The tests run as root, which can give a file to anyone: nobody is the
// user the daemon does not trust, unless a test's Checker runs as nobody.

func needRoot(t *testing.T) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("giving files to other users needs root")
	}
}

// tree makes a directory of the test (root's, 0755, under the tests'
// private temporary directory) and returns its path.
func tree(t *testing.T) string {
	t.Helper()
	dir := filepath.Join(t.TempDir(), "t")
	if err := os.Mkdir(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	return dir
}

func mkdir(t *testing.T, path string, mode os.FileMode) string {
	t.Helper()
	if err := os.Mkdir(path, 0o700); err != nil {
		t.Fatal(err)
	}
	chmod(t, path, mode)
	return path
}

func chmod(t *testing.T, path string, mode os.FileMode) {
	t.Helper()
	if err := os.Chmod(path, mode); err != nil {
		t.Fatal(err)
	}
}

func symlink(t *testing.T, target, link string) string {
	t.Helper()
	if err := os.Symlink(target, link); err != nil {
		t.Fatal(err)
	}
	return link
}

// wantError checks that err is an *Error about path whose message has
// every one of want.
func wantError(t *testing.T, err error, path string, want ...string) {
	t.Helper()
	var te *Error
	if !errors.As(err, &te) {
		t.Fatalf("error %v (%T), want a *trust.Error about %s", err, err, path)
	}
	if te.Path != path {
		t.Errorf("error %q is about %s, want %s", err, te.Path, path)
	}
	for _, w := range want {
		if !strings.Contains(err.Error(), w) {
			t.Errorf("error %q lacks %q", err, w)
		}
	}
}

var root = Checker{UID: 0}

func TestDirAcceptsRootsPrivateDirUnderStickyTmp(t *testing.T) {
	needRoot(t)
	// t.TempDir: root's 0700 directories under /tmp, root's and sticky.
	if err := root.Dir(t.TempDir(), "apps directory"); err != nil {
		t.Fatal(err)
	}
	if err := root.Dir(tree(t), "apps directory"); err != nil {
		t.Fatal(err)
	}
}

func TestDirRefusesWhatAnotherUserOwnsOrOthersCanWrite(t *testing.T) {
	needRoot(t)
	base := tree(t)
	owned := mkdir(t, filepath.Join(base, "owned"), 0o755)
	testutil.ChownNobody(t, owned)
	wantError(t, root.Dir(owned, "apps directory"), owned,
		"apps directory "+owned+" is owned by nobody (uid 65534), not root", "fix it with: chown root "+owned)

	open := mkdir(t, filepath.Join(base, "open"), 0o777)
	wantError(t, root.Dir(open, "apps directory"), open,
		"apps directory "+open+" is writable by group or others (mode 0777)", "fix it with: chmod go-w "+open)

	// Sticky is fine on the way, not for the directory itself: anyone
	// may add a file to it.
	sticky := mkdir(t, filepath.Join(base, "sticky"), 0o777|os.ModeSticky)
	wantError(t, root.Dir(sticky, "apps directory"), sticky, "is writable by group or others")
	below := mkdir(t, filepath.Join(sticky, "apps"), 0o755)
	if err := root.Dir(below, "apps directory"); err != nil {
		t.Fatalf("a root directory in a sticky directory: %v", err)
	}
	// ... but in a sticky directory, what another user made is theirs.
	theirs := mkdir(t, filepath.Join(sticky, "theirs"), 0o755)
	testutil.ChownNobody(t, theirs)
	apps := mkdir(t, filepath.Join(theirs, "apps"), 0o755)
	wantError(t, root.Dir(apps, "apps directory"), theirs,
		theirs+", on the way to the apps directory "+apps+", is owned by nobody", "chown root "+theirs)

	group := mkdir(t, filepath.Join(base, "group"), 0o775)
	inGroup := mkdir(t, filepath.Join(group, "apps"), 0o755)
	wantError(t, root.Dir(inGroup, "apps directory"), group,
		group+", on the way to the apps directory "+inGroup+", is writable by group or others (mode 0775)", "chmod go-w "+group)

	file := filepath.Join(base, "file")
	testutil.WriteFile(t, file, "")
	wantError(t, root.Dir(file, "apps directory"), file, "is not a directory")
}

func TestDirJudgesEveryDirectoryASymlinkLeadsThrough(t *testing.T) {
	needRoot(t)
	base := tree(t)
	theirs := mkdir(t, filepath.Join(base, "theirs"), 0o755)
	testutil.ChownNobody(t, theirs)
	real := mkdir(t, filepath.Join(theirs, "apps"), 0o755)
	// root's own link, in root's directory, into nobody's directory.
	link := symlink(t, "theirs/apps", filepath.Join(base, "apps"))
	wantError(t, root.Dir(link, "apps directory"), theirs,
		theirs+", on the way to the apps directory "+link+", is owned by nobody")
	if err := root.Dir(real, "apps directory"); err == nil {
		t.Fatal("the target itself is accepted")
	}

	// A link nobody owns, even in root's directory, even to root's
	// directory.
	mine := mkdir(t, filepath.Join(base, "mine"), 0o755)
	theirLink := symlink(t, mine, filepath.Join(base, "their-link"))
	if err := os.Lchown(theirLink, testutil.Nobody, testutil.Nobody); err != nil {
		t.Fatal(err)
	}
	wantError(t, root.Dir(theirLink, "apps directory"), theirLink,
		", a symlink on the way to the apps directory", "chown -h root "+theirLink)

	// Links relative to links, and "..", resolve as the kernel does.
	symlink(t, "mine/../mine/.", filepath.Join(base, "rel"))
	chain := symlink(t, "rel", filepath.Join(base, "chain"))
	if err := root.Dir(chain, "apps directory"); err != nil {
		t.Fatalf("a chain of root's links to root's directory: %v", err)
	}

	loop := symlink(t, "loop", filepath.Join(base, "loop"))
	if err := root.Dir(loop, "apps directory"); !errors.Is(err, syscall.ELOOP) {
		t.Fatalf("a symlink loop: %v, want ELOOP", err)
	}
}

// The same checks for a daemon that is not root: its own user and root
// are trusted, nobody else.
func TestDirTrustsTheDaemonsOwnUser(t *testing.T) {
	needRoot(t)
	asNobody := Checker{UID: testutil.Nobody}
	base := tree(t)
	dir := mkdir(t, filepath.Join(base, "apps"), 0o755)
	testutil.ChownNobody(t, dir)
	if err := asNobody.Dir(dir, "apps directory"); err != nil {
		t.Fatalf("nobody's directory for a daemon running as nobody: %v", err)
	}
	if err := os.Chown(dir, 12345, 12345); err != nil {
		t.Fatal(err)
	}
	wantError(t, asNobody.Dir(dir, "apps directory"), dir,
		"is owned by uid 12345, not root or nobody (uid 65534), whom dynapm runs as", "fix it with: chown nobody "+dir)
}

func TestFileRefusesASettingsFileOfAnotherUserOrInThePrivateDir(t *testing.T) {
	needRoot(t)
	base := tree(t)
	file := filepath.Join(base, "dynapm.yaml")
	testutil.WriteFile(t, file, "")
	if err := root.File(file, "settings file"); err != nil {
		t.Fatal(err)
	}
	testutil.ChownNobody(t, file)
	wantError(t, root.File(file, "settings file"), file, "settings file "+file+" is owned by nobody", "chown root "+file)
	if err := os.Chown(file, 0, 0); err != nil {
		t.Fatal(err)
	}
	chmod(t, file, 0o666)
	wantError(t, root.File(file, "settings file"), file, "chmod go-w "+file)
	wantError(t, root.File(base, "settings file"), base, "is not a regular file")

	chmod(t, file, 0o644)
	c := Checker{Private: []string{base}}
	wantError(t, c.File(file, "settings file"), file, "is inside the state directory "+base)
}

func TestAppFileBelongsToWhoeverCanChangeIt(t *testing.T) {
	needRoot(t)
	base := tree(t)
	apps := mkdir(t, filepath.Join(base, "apps"), 0o755)
	state := mkdir(t, filepath.Join(base, "state"), 0o700)
	c := Checker{Private: []string{state}}

	plain := filepath.Join(apps, "plain.yaml")
	testutil.WriteFile(t, plain, "")
	if o, err := c.AppFile(plain); err != nil || o != (Owner{UID: 0, Resolved: plain}) {
		t.Fatalf("root's file: %+v, %v", o, err)
	}

	theirs := filepath.Join(apps, "theirs.yaml")
	testutil.WriteFile(t, theirs, "")
	testutil.ChownNobody(t, theirs)
	if o, err := c.AppFile(theirs); err != nil || o != (Owner{UID: testutil.Nobody, Resolved: theirs}) {
		t.Fatalf("nobody's file: %+v, %v", o, err)
	}

	// Root's link to root's file, in a directory nobody owns: nobody
	// can replace the file.
	home := mkdir(t, filepath.Join(base, "home"), 0o755)
	testutil.ChownNobody(t, home)
	target := filepath.Join(home, "web.yaml")
	testutil.WriteFile(t, target, "")
	link := symlink(t, target, filepath.Join(apps, "web.yaml"))
	if o, err := c.AppFile(link); err != nil || o != (Owner{UID: testutil.Nobody, Via: home, Resolved: target}) {
		t.Fatalf("root's link into nobody's directory: %+v, %v", o, err)
	}

	// The link itself nobody's, to root's file: lstat, not stat.
	theirLink := symlink(t, plain, filepath.Join(apps, "their-link.yaml"))
	if err := os.Lchown(theirLink, testutil.Nobody, testutil.Nobody); err != nil {
		t.Fatal(err)
	}
	if o, err := c.AppFile(theirLink); err != nil || o != (Owner{UID: testutil.Nobody, Via: theirLink, Resolved: plain}) {
		t.Fatalf("nobody's link to root's file: %+v, %v", o, err)
	}

	// Into a directory anyone can write: anyone's.
	open := mkdir(t, filepath.Join(base, "open"), 0o777)
	testutil.WriteFile(t, filepath.Join(open, "x.yaml"), "")
	openLink := symlink(t, filepath.Join(open, "x.yaml"), filepath.Join(apps, "open.yaml"))
	_, err := c.AppFile(openLink)
	wantError(t, err, open, open+", on the way to the app file,", "is writable by group or others (mode 0777)")

	// Two users.
	if err := os.Chown(target, 12345, 12345); err != nil {
		t.Fatal(err)
	}
	_, err = c.AppFile(link)
	wantError(t, err, link, "can be changed by two users: nobody (uid 65534), who owns "+home+", and uid 12345, who owns "+target)

	// Into the state directory, whoever owns what is there.
	logs := mkdir(t, filepath.Join(state, "logs"), 0o700)
	log := filepath.Join(logs, "adv.log")
	testutil.WriteFile(t, log, "")
	pwn := symlink(t, log, filepath.Join(apps, "pwn.yaml"))
	_, err = c.AppFile(pwn)
	wantError(t, err, pwn, "app file resolves to "+log+", inside the state directory "+state)
}

// A batch (the files of one reload) looks at each directory once: a change
// made to one during the batch is seen by the next batch.
func TestBatchLooksAtEachDirectoryOnce(t *testing.T) {
	base := tree(t)
	apps := mkdir(t, filepath.Join(base, "apps"), 0o755)
	a, b := filepath.Join(apps, "a.yaml"), filepath.Join(apps, "b.yaml")
	testutil.WriteFile(t, a, "")
	testutil.WriteFile(t, b, "")
	batch := root.Batch()
	if _, err := batch.AppFile(a); err != nil {
		t.Fatal(err)
	}
	chmod(t, apps, 0o777)
	if _, err := batch.AppFile(b); err != nil {
		t.Fatalf("the batch looked at the directory again: %v", err)
	}
	for name, c := range map[string]Checker{"a new batch": root.Batch(), "no batch": root} {
		if _, err := c.AppFile(b); err == nil {
			t.Errorf("%s does not see the directory anyone can write now", name)
		}
	}
}

// AppDir trusts the app's own user beside root and the daemon's, all the
// way up; a missing directory is judged by the nearest one above it, but
// not through a dangling symlink, whose target someone else could make.
func TestAppDirTrustsTheAppsUserAndJudgesWhatIsMissingByItsParent(t *testing.T) {
	needRoot(t)
	root := tree(t)
	own := mkdir(t, filepath.Join(root, "own"), 0o755)
	testutil.ChownNobody(t, own)
	open := mkdir(t, filepath.Join(root, "open"), 0o1777)
	c := Checker{UID: 0}
	const what = "directory of the socket"
	if err := c.AppDir(own, what, testutil.Nobody); err != nil {
		t.Errorf("the app user's own directory: %v", err)
	}
	if err := c.AppDir(filepath.Join(own, "not", "yet"), what, testutil.Nobody); err != nil {
		t.Errorf("a directory not made yet in the app user's own: %v", err)
	}
	wantError(t, c.AppDir(own, what, 0), own, "is owned by nobody (uid 65534), not root", "chown root "+own)
	wantError(t, c.AppDir(open, what, testutil.Nobody), open, "is writable by group or others")
	missing := filepath.Join(open, "later")
	wantError(t, c.AppDir(missing, what, testutil.Nobody), open,
		what+" "+missing+" does not exist yet; the directory above it "+open+" is writable by group or others")
	dangling := symlink(t, filepath.Join(open, "made-by-anyone"), filepath.Join(own, "link"))
	wantError(t, c.AppDir(filepath.Join(dangling, "sub"), what, testutil.Nobody), dangling, "is a symlink to nothing")
	// The daemon's user, not root, is trusted too, and named in the fix.
	mine := mkdir(t, filepath.Join(root, "mine"), 0o755)
	testutil.ChownNobody(t, mine)
	if err := (Checker{UID: testutil.Nobody}).AppDir(mine, what, 1234); err != nil {
		t.Errorf("the daemon user's directory: %v", err)
	}
	wantError(t, (Checker{UID: 4321}).AppDir(mine, what, 1234), mine,
		"not root, uid 4321 (whom dynapm runs as) or uid 1234 (whom the app runs as)", "chown 1234 "+mine)
	// Above the app's directory, the fix gives a directory back to root.
	app := mkdir(t, filepath.Join(mine, "app"), 0o755)
	if err := os.Chown(app, 1234, 1234); err != nil {
		t.Fatal(err)
	}
	wantError(t, c.AppDir(app, what, 1234), mine,
		mine+", on the way to the "+what, "not root or uid 1234, whom the app runs as", "chown root "+mine)
	// Nor in the state directory, where the daemon's own socket is.
	state := mkdir(t, filepath.Join(root, "state"), 0o700)
	private := Checker{UID: 0, Private: []string{state}}
	wantError(t, private.AppDir(state, what, 0), state, "is inside the state directory "+state)
	wantError(t, private.AppDir(filepath.Join(state, "sub"), what, 0), filepath.Join(state, "sub"), "is inside the state directory "+state)
	via := symlink(t, state, filepath.Join(root, "via"))
	wantError(t, private.AppDir(via, what, 0), via, "resolves to "+state+", inside the state directory")
}
