package e2e

import (
	"bufio"
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/dynapm/dynapm/internal/testutil"
)

// The README's recipes, run with the real programs from Debian's packages
// (.ci/run installs them): each test takes the app file from README.md as
// written, changing only paths and ports. A test skips, saying why, where
// its program or root is missing.

// recipeWait bounds a real program's start, stop or answer: generous, for
// a loaded 2-core machine.
const recipeWait = 60 * time.Second

// recipeBlocks returns the fenced blocks of README.md's recipe under the
// heading "### name", in order.
func recipeBlocks(t *testing.T, name string) []string {
	t.Helper()
	readme, err := os.ReadFile(filepath.Join(repoRoot, "README.md"))
	if err != nil {
		t.Fatal(err)
	}
	_, section, ok := strings.Cut(string(readme), "\n## Recipes\n")
	if !ok {
		t.Fatal("README.md has no Recipes section")
	}
	section, _, _ = strings.Cut(section, "\n## ")
	_, recipe, ok := strings.Cut(section, "\n### "+name+"\n")
	if !ok {
		t.Fatalf("README.md's Recipes have no %q", name)
	}
	recipe, _, _ = strings.Cut(recipe, "\n### ")
	var blocks []string
	for i, part := range strings.Split(recipe, "```") {
		if i%2 == 1 {
			_, body, _ := strings.Cut(part, "\n") // the fence's language
			blocks = append(blocks, body)
		}
	}
	if len(blocks) == 0 {
		t.Fatalf("README.md's recipe %q has no code block", name)
	}
	return blocks
}

// replaceAll applies old, new pairs to s, failing the test when an old
// string is not there: the README changed under the test.
func replaceAll(t *testing.T, s string, pairs ...string) string {
	t.Helper()
	for i := 0; i < len(pairs); i += 2 {
		if !strings.Contains(s, pairs[i]) {
			t.Fatalf("the recipe no longer holds %q:\n%s", pairs[i], s)
		}
		s = strings.ReplaceAll(s, pairs[i], pairs[i+1])
	}
	return s
}

// needRoot skips a test that runs a program as another user.
func needRoot(t *testing.T, why string) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skipf("needs root: %s", why)
	}
}

// needPrograms skips the test when one of paths is missing.
func needPrograms(t *testing.T, pkg string, paths ...string) {
	t.Helper()
	for _, p := range paths {
		if _, err := os.Stat(p); err != nil {
			t.Skipf("%s is not installed (%s: %v); apt-get install %s", pkg, p, err, pkg)
		}
	}
}

// account returns the uid and gid of user name, skipping the test when
// there is none.
func account(t *testing.T, name, pkg string) (uint32, uint32) {
	t.Helper()
	u, err := user.Lookup(name)
	if err != nil {
		t.Skipf("no user %q (%v); the %s package makes it", name, err, pkg)
	}
	uid, _ := strconv.ParseUint(u.Uid, 10, 32)
	gid, _ := strconv.ParseUint(u.Gid, 10, 32)
	return uint32(uid), uint32(gid)
}

// ownedDir makes a fresh directory owned by uid and gid, mode 0700, and
// removes it when the test ends.
func ownedDir(t *testing.T, uid, gid uint32) string {
	t.Helper()
	dir, err := os.MkdirTemp("", "dynapm-recipe-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	if err := os.Chown(dir, int(uid), int(gid)); err != nil {
		t.Fatal(err)
	}
	return dir
}

// runAs runs argv as uid and gid to completion, bounded by recipeWait.
func runAs(t *testing.T, uid, gid uint32, dir string, argv ...string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), recipeWait)
	defer cancel()
	cmd := exec.CommandContext(ctx, argv[0], argv[1:]...)
	cmd.Dir = dir
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: uid, Gid: gid}}
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("%q: %v\n%s", argv, err, out)
	}
}

// processesOf lists the live processes of uid (any user when uid is -1)
// whose command line holds mark or whose working directory is dir: what is
// left of a program after its stop.
func processesOf(uid int, mark, dir string) []string {
	entries, _ := os.ReadDir("/proc")
	var out []string
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil || !testutil.ProcessAlive(pid) {
			continue
		}
		p := "/proc/" + e.Name()
		fi, err := os.Stat(p)
		if err != nil || uid >= 0 && fi.Sys().(*syscall.Stat_t).Uid != uint32(uid) {
			continue
		}
		b, _ := os.ReadFile(p + "/cmdline")
		cmdline := strings.TrimSpace(strings.ReplaceAll(string(b), "\x00", " "))
		cwd, _ := os.Readlink(p + "/cwd")
		if strings.Contains(cmdline, mark) || dir != "" && cwd == dir {
			out = append(out, fmt.Sprintf("%d %s", pid, cmdline))
		}
	}
	return out
}

// stopApp runs dynapm stop and fails the test unless it stopped the app.
func stopApp(t *testing.T, state, app string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), recipeWait)
	defer cancel()
	cmd := exec.CommandContext(ctx, dynapmBin, "stop", app, "-state", state)
	out, err := cmd.Output()
	if err != nil || !strings.HasPrefix(string(out), app+": stopped") {
		t.Fatalf("stop %s: %v, out %q", app, err, out)
	}
	return string(out)
}

// lastStartLog waits until the app's log, from its last start on, holds
// want, and returns that part.
func lastStartLog(t *testing.T, state, app, want string) string {
	t.Helper()
	var last string
	testutil.Eventually(t, recipeWait, func() bool {
		b, _ := os.ReadFile(filepath.Join(state, "logs", app+".log"))
		i := strings.LastIndex(string(b), "--- starting at ")
		last = string(b[max(i, 0):])
		return strings.Contains(last, want)
	}, "the log of %s's last start has no %q:\n%s", app, want, &last)
	return last
}

// PostgreSQL.

// pgCluster is a PostgreSQL cluster made by a test, and the programs of the
// newest PostgreSQL installed.
type pgCluster struct {
	bin      string // /usr/lib/postgresql/N/bin
	data     string
	uid, gid uint32
}

// newPGCluster runs initdb as the postgres user into a fresh directory.
func newPGCluster(t *testing.T) *pgCluster {
	t.Helper()
	needRoot(t, "postgres runs as the postgres user")
	bins, _ := filepath.Glob("/usr/lib/postgresql/*/bin")
	slices.SortFunc(bins, func(a, b string) int { return pgVersion(b) - pgVersion(a) })
	if len(bins) == 0 {
		t.Skip("PostgreSQL is not installed (no /usr/lib/postgresql/*/bin); apt-get install postgresql")
	}
	c := &pgCluster{bin: bins[0]}
	needPrograms(t, "postgresql", c.prog("postgres"), c.prog("initdb"), c.prog("psql"), c.prog("pg_isready"))
	c.uid, c.gid = account(t, "postgres", "postgresql")
	base := ownedDir(t, c.uid, c.gid)
	c.data = filepath.Join(base, "data")
	runAs(t, c.uid, c.gid, base, c.prog("initdb"), "-D", c.data, "--auth=trust", "--username=postgres",
		"--encoding=UTF8", "--no-sync", "--no-instructions")
	return c
}

func pgVersion(bin string) int {
	n, _ := strconv.Atoi(filepath.Base(filepath.Dir(bin)))
	return n
}

func (c *pgCluster) prog(name string) string { return filepath.Join(c.bin, name) }

// appFile is README.md's PostgreSQL recipe for this cluster on listen,
// with ready: {notify: true}, or its pg_isready line instead.
func (c *pgCluster) appFile(t *testing.T, listen string, pgIsready bool) string {
	yaml := replaceAll(t, recipeBlocks(t, "PostgreSQL")[0],
		"/usr/lib/postgresql/15/bin", c.bin,
		"/var/lib/dynapm/postgres", c.data,
		`"127.0.0.1:5432"`, strconv.Quote(listen))
	if pgIsready {
		yaml = replaceAll(t, yaml, "\nready: {notify: true}", "\n# ready: {notify: true}",
			"\n# ready: {command:", "\nready: {command:")
	}
	return yaml
}

// psql runs one statement through listen and returns its output.
func (c *pgCluster) psql(listen, sql string) (string, error) {
	host, port, _ := net.SplitHostPort(listen)
	ctx, cancel := context.WithTimeout(context.Background(), recipeWait)
	defer cancel()
	cmd := exec.CommandContext(ctx, c.prog("psql"), "-X", "-At", "-h", host, "-p", port, "-U", "postgres", "-d", "postgres", "-c", sql)
	cmd.Env = append(os.Environ(), "PGCONNECT_TIMEOUT=30")
	out, err := cmd.CombinedOutput()
	return strings.TrimSpace(string(out)), err
}

// left lists the cluster's processes still alive: the postmaster's command
// line names the data directory, every other postgres process works in it.
func (c *pgCluster) left() []string {
	return processesOf(int(c.uid), c.data, c.data)
}

// pgTwentyColdWakes wakes the recipe's app 20 times with psql, stopping it
// in between: the first statement of every wake succeeds, and no postgres
// process outlives a stop.
func pgTwentyColdWakes(t *testing.T, pgIsready bool) {
	c := newPGCluster(t)
	apps, state := t.TempDir(), stateDir(t)
	listen := testutil.FreeAddr(t)
	testutil.WriteFile(t, filepath.Join(apps, "pg.yaml"), c.appFile(t, listen, pgIsready))
	startDaemon(t, apps, "-state", state)
	const wakes = 20
	for i := range wakes {
		if out, err := c.psql(listen, "select 1"); err != nil || out != "1" {
			t.Fatalf("wake %d: the first psql got %q, %v", i+1, out, err)
		}
		stopApp(t, state, "pg")
		if left := c.left(); len(left) > 0 {
			t.Fatalf("after stop %d, postgres processes are left:\n%s", i+1, strings.Join(left, "\n"))
		}
	}
	if starts := statusOf(t, state, "pg")["starts"]; starts != float64(wakes) {
		t.Errorf("%v starts, want %d: each wake was not a cold start", starts, wakes)
	}
}

func TestPostgresRecipeTwentyColdWakesWithNotify(t *testing.T) {
	pgTwentyColdWakes(t, false)
}

func TestPostgresRecipeTwentyColdWakesWithPgIsready(t *testing.T) {
	pgTwentyColdWakes(t, true)
}

// dynapm stop with sessions open ends them and shuts postgres down clean
// (stop_signal SIGINT): at once, no process left, and the next start does
// not recover from a crash; in a cgroup and in the process-group fallback.
func TestPostgresRecipeStopWithSessionsOpenIsClean(t *testing.T) {
	for _, contain := range containments {
		t.Run(contain, func(t *testing.T) { pgStopWithSessionsOpen(t, contain) })
	}
}

func pgStopWithSessionsOpen(t *testing.T, contain string) {
	forceContainment(t, contain)
	c := newPGCluster(t)
	apps, state := t.TempDir(), stateDir(t)
	listen := testutil.FreeAddr(t)
	testutil.WriteFile(t, filepath.Join(apps, "pg.yaml"), c.appFile(t, listen, false))
	d := startDaemon(t, apps, "-state", state)
	requireContainment(t, d, contain)

	const sessions = 2
	ended := make(chan error, sessions)
	for range sessions {
		go func() {
			_, err := c.psql(listen, "select pg_sleep(600)")
			ended <- err
		}()
	}
	testutil.Eventually(t, recipeWait, func() bool {
		out, err := c.psql(listen, "select count(*) from pg_stat_activity where query like 'select pg_sleep%'")
		return err == nil && out == strconv.Itoa(sessions)
	}, "the %d sessions are not open", sessions)

	began := time.Now()
	out := stopApp(t, state, "pg")
	if took := time.Since(began); took > 5*time.Second || strings.Contains(out, "kill") {
		t.Errorf("stop took %v (%q): postgres did not shut down at the stop signal", took, out)
	}
	for range sessions {
		select {
		case err := <-ended:
			if err == nil {
				t.Error("a session's pg_sleep(600) ended without an error: it was not cut by the stop")
			}
		case <-time.After(recipeWait):
			t.Fatal("a session is still open after the stop")
		}
	}
	if left := c.left(); len(left) > 0 {
		t.Fatalf("postgres processes are left after the stop:\n%s", strings.Join(left, "\n"))
	}
	last := lastStartLog(t, state, "pg", "database system is shut down")
	if !strings.Contains(last, "received fast shutdown request") {
		t.Errorf("postgres did not get a fast shutdown (SIGINT):\n%s", last)
	}

	if out, err := c.psql(listen, "select 1"); err != nil || out != "1" {
		t.Fatalf("the wake after the stop: psql got %q, %v", out, err)
	}
	last = lastStartLog(t, state, "pg", "database system is ready to accept connections")
	if strings.Contains(last, "not properly shut down") {
		t.Fatalf("the start after a stop with sessions open recovered from a crash:\n%s", last)
	}
	stopApp(t, state, "pg")
	if left := c.left(); len(left) > 0 {
		t.Fatalf("postgres processes are left after the last stop:\n%s", strings.Join(left, "\n"))
	}
}

// Redis.

// redisCommand sends one inline command on a fresh connection to addr and
// returns the first line of the answer.
func redisCommand(t *testing.T, addr, command string) string {
	t.Helper()
	c, err := net.DialTimeout("tcp", addr, recipeWait)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(recipeWait))
	if _, err := c.Write([]byte(command + "\r\n")); err != nil {
		t.Fatal(err)
	}
	r := bufio.NewReader(c)
	line, err := r.ReadString('\n')
	if err != nil {
		t.Fatalf("%s: %v (got %q)", command, err, line)
	}
	if strings.HasPrefix(line, "$") && line != "$-1\r\n" {
		line, _ = r.ReadString('\n') // a bulk string's value
	}
	return strings.TrimRight(line, "\r\n")
}

// Redis answers the first connection of every wake, and keeps its data
// across the stops in between (it saves on SIGTERM).
func TestRedisRecipeAnswersTheFirstConnectionOfEveryWakeAndKeepsItsData(t *testing.T) {
	needRoot(t, "redis runs as the redis user")
	needPrograms(t, "redis-server", "/usr/bin/redis-server")
	uid, gid := account(t, "redis", "redis-server")
	data := ownedDir(t, uid, gid)
	apps, state := t.TempDir(), stateDir(t)
	listen := testutil.FreeAddr(t)
	testutil.WriteFile(t, filepath.Join(apps, "redis.yaml"), replaceAll(t, recipeBlocks(t, "Redis")[0],
		"/var/lib/dynapm/redis", data,
		`"127.0.0.1:6379"`, strconv.Quote(listen)))
	startDaemon(t, apps, "-state", state)
	for i := range 3 {
		if got := redisCommand(t, listen, "PING"); got != "+PONG" {
			t.Fatalf("wake %d: the first PING got %q", i+1, got)
		}
		if i == 0 {
			if got := redisCommand(t, listen, "SET dynapm kept"); got != "+OK" {
				t.Fatalf("SET: %q", got)
			}
		} else if got := redisCommand(t, listen, "GET dynapm"); got != "kept" {
			t.Fatalf("wake %d: GET got %q: the data did not survive the stop", i+1, got)
		}
		stopApp(t, state, "redis")
		if left := processesOf(int(uid), data, data); len(left) > 0 {
			t.Fatalf("after stop %d, redis processes are left:\n%s", i+1, strings.Join(left, "\n"))
		}
	}
}

// OpenSSH.

// sshd runs through DynaPM: the banner arrives on the first connection of
// a wake (the probe's connection, handed over), and an ssh client with a
// key runs a command through it.
func TestOpenSSHRecipeRunsACommandThroughDynaPM(t *testing.T) {
	needRoot(t, "sshd runs as root")
	needPrograms(t, "openssh-server openssh-client", "/usr/sbin/sshd", "/usr/bin/ssh", "/usr/bin/ssh-keygen")
	if _, err := os.Stat("/run/sshd"); os.IsNotExist(err) {
		// sshd's privilege separation directory, which ssh.service makes.
		if err := os.Mkdir("/run/sshd", 0o755); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { os.Remove("/run/sshd") })
	}
	dir := ownedDir(t, 0, 0)
	hostKey, clientKey := filepath.Join(dir, "host_ed25519"), filepath.Join(dir, "client_ed25519")
	for _, k := range []string{hostKey, clientKey} {
		runAs(t, 0, 0, dir, "/usr/bin/ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", k)
	}
	pub, err := os.ReadFile(clientKey + ".pub")
	if err != nil {
		t.Fatal(err)
	}
	authorized := filepath.Join(dir, "authorized_keys")
	if err := os.WriteFile(authorized, pub, 0o600); err != nil {
		t.Fatal(err)
	}
	blocks := recipeBlocks(t, "OpenSSH")
	config := filepath.Join(dir, "sshd_config")
	// The README's config, with this test's host key, and the client's key
	// where sshd looks for it without checking the temporary directory's
	// modes.
	if err := os.WriteFile(config, []byte(replaceAll(t, blocks[1], "/etc/ssh/ssh_host_ed25519_key", hostKey)+
		"AuthorizedKeysFile "+authorized+"\nStrictModes no\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	apps, state := t.TempDir(), stateDir(t)
	listen := testutil.FreeAddr(t)
	testutil.WriteFile(t, filepath.Join(apps, "ssh.yaml"), replaceAll(t, blocks[0],
		"/etc/dynapm/sshd_config", config,
		`"0.0.0.0:2222"`, strconv.Quote(listen)))
	startDaemon(t, apps, "-state", state)

	c, err := net.DialTimeout("tcp", listen, recipeWait)
	if err != nil {
		t.Fatal(err)
	}
	_ = c.SetDeadline(time.Now().Add(recipeWait))
	banner, err := bufio.NewReader(c).ReadString('\n')
	c.Close()
	if err != nil || !strings.HasPrefix(banner, "SSH-2.0-OpenSSH") {
		t.Fatalf("the first connection got %q, %v; want sshd's banner", banner, err)
	}
	stopApp(t, state, "ssh")

	_, port, _ := net.SplitHostPort(listen)
	ctx, cancel := context.WithTimeout(context.Background(), recipeWait)
	defer cancel()
	out, err := exec.CommandContext(ctx, "/usr/bin/ssh", "-F", "/dev/null", "-i", clientKey, "-p", port,
		"-o", "BatchMode=yes", "-o", "StrictHostKeyChecking=no", "-o", "UserKnownHostsFile=/dev/null",
		"-o", "ConnectTimeout=30", "-o", "LogLevel=ERROR",
		"root@127.0.0.1", "echo", "through", "dynapm").CombinedOutput()
	if err != nil || strings.TrimSpace(string(out)) != "through dynapm" {
		t.Fatalf("ssh through DynaPM: %v: %q", err, out)
	}
	stopApp(t, state, "ssh")
	if left := processesOf(-1, config, ""); len(left) > 0 {
		t.Fatalf("sshd processes are left after the stop:\n%s", strings.Join(left, "\n"))
	}
}
