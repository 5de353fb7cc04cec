package e2e

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"

	"github.com/dynapm/dynapm/internal/testutil"
)

// handoffExamples returns the fenced blocks of README.md's "Socket
// hand-off" section, in order.
func handoffExamples(t *testing.T) []string {
	t.Helper()
	readme, err := os.ReadFile(filepath.Join(repoRoot, "README.md"))
	if err != nil {
		t.Fatal(err)
	}
	_, section, ok := strings.Cut(string(readme), "\n### Socket hand-off\n")
	if !ok {
		t.Fatal("README.md has no Socket hand-off section")
	}
	section, _, _ = strings.Cut(section, "\n## ")
	var blocks []string
	for i, part := range strings.Split(section, "```") {
		if i%2 == 1 {
			_, body, _ := strings.Cut(part, "\n")
			blocks = append(blocks, body)
		}
	}
	if len(blocks) != 2 {
		t.Fatalf("README.md's Socket hand-off has %d code blocks, want 2 (socket, inetd)", len(blocks))
	}
	return blocks
}

// The README's socket example: one program gets both listening sockets.
func TestReadmeSocketExampleHandsEveryAddressToOneProgram(t *testing.T) {
	apps := t.TempDir()
	listen := []string{testutil.FreeAddr(t), testutil.FreeAddr(t)}
	testutil.WriteFile(t, filepath.Join(apps, "api.yaml"), replaceAll(t, handoffExamples(t)[0],
		`"127.0.0.1:8080"`, strconv.Quote(listen[0]),
		`"127.0.0.1:8443"`, strconv.Quote(listen[1]),
		`["./api"]`, fmt.Sprintf(`[%q, "-listen-fds", "-hello"]`, testutil.TestApp(t))))
	startDaemon(t, apps)
	first := dialHandoff(t, listen[0])
	second := dialHandoff(t, listen[1])
	if first.pid != second.pid {
		t.Fatalf("the addresses were served by pids %d and %d, want one program", first.pid, second.pid)
	}
	if got := second.echo(t, "8443"); got != "8443" {
		t.Fatalf("echo = %q", got)
	}
}

// The README's inetd example with Debian's git: a git daemon per client.
func TestReadmeInetdExampleServesGitClients(t *testing.T) {
	needPrograms(t, "git", "/usr/bin/git", "/usr/lib/git-core/git-daemon")
	base := t.TempDir()
	git := func(args ...string) string {
		t.Helper()
		cmd := exec.Command("git", args...)
		cmd.Env = append(os.Environ(), "GIT_AUTHOR_NAME=t", "GIT_AUTHOR_EMAIL=t@example.com",
			"GIT_COMMITTER_NAME=t", "GIT_COMMITTER_EMAIL=t@example.com", "GIT_CONFIG_NOSYSTEM=1", "HOME="+base)
		out, err := cmd.CombinedOutput()
		if err != nil {
			t.Fatalf("git %v: %v\n%s", args, err, out)
		}
		return string(out)
	}
	work := filepath.Join(base, "work")
	git("init", "-q", "-b", "main", work)
	git("-C", work, "commit", "-q", "--allow-empty", "-m", "first")
	git("clone", "-q", "--bare", work, filepath.Join(base, "repo.git"))

	apps := t.TempDir()
	listen := testutil.FreeAddr(t)
	testutil.WriteFile(t, filepath.Join(apps, "git.yaml"), replaceAll(t, handoffExamples(t)[1],
		`"0.0.0.0:9418"`, strconv.Quote(listen),
		"/srv/git", base))
	d := startDaemon(t, apps)

	const clients = 5
	outs := make([]string, clients)
	var wg sync.WaitGroup
	for i := range clients {
		wg.Go(func() {
			out, err := exec.Command("git", "ls-remote", "git://"+listen+"/repo.git").CombinedOutput()
			outs[i] = string(out)
			if err != nil {
				outs[i] += err.Error()
			}
		})
	}
	wg.Wait()
	for i, out := range outs {
		if !strings.Contains(out, "refs/heads/main") {
			t.Fatalf("git ls-remote %d: %s", i, out)
		}
	}
	testutil.Eventually(t, recipeWait, func() bool { return len(processesOf(-1, base, "")) == 0 },
		"git daemon processes are left:\n%s", d.out)
}
