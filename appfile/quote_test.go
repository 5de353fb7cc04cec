package appfile

import (
	"fmt"
	"math/rand/v2"
	"path/filepath"
	"strings"
	"testing"
)

// shadowLike returns n lines shaped like /etc/shadow's, with random salts
// and hashes, so that any piece of them found in an error came from the
// file.
func shadowLike(n int) []string {
	rng := rand.New(rand.NewPCG(19, 5))
	const chars = "./0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
	random := func(n int) string {
		b := make([]byte, n)
		for i := range b {
			b[i] = chars[rng.IntN(len(chars))]
		}
		return string(b)
	}
	lines := make([]string, n)
	for i := range lines {
		lines[i] = fmt.Sprintf("user%02d:$6$%s$%s:19700:0:99999:7:::", i, random(16), random(86))
	}
	return lines
}

// leaked returns, for each line, the length of the longest piece of it
// that appears in text, counting pieces of 8 bytes or more.
func leaked(lines []string, text string) []int {
	out := make([]int, len(lines))
	for i, line := range lines {
		for start := range line {
			for end := start + max(8, out[i]+1); end <= len(line) && strings.Contains(text, line[start:end]); end++ {
				out[i] = end - start
			}
		}
	}
	return out
}

// TestErrorsQuoteLittleOfAFileThatIsNotAnAppFile: an app file that is a
// symlink to /etc/shadow parses as YAML keys, one per line; the error
// names a few of them, each cut short, rather than copying the file into
// check's output and the log.
func TestErrorsQuoteLittleOfAFileThatIsNotAnAppFile(t *testing.T) {
	lines := shadowLike(40)
	data := strings.Join(lines, "\n") + "\n"
	for _, name := range []string{"pwn.yaml", "pwn.toml", "pwn.json"} {
		t.Run(name, func(t *testing.T) {
			_, err := Parse(filepath.Join(t.TempDir(), name), []byte(data))
			if err == nil {
				t.Fatal("accepted")
			}
			total, shown := 0, 0
			for i, n := range leaked(lines, err.Error()) {
				if n > MaxQuoted {
					t.Errorf("line %d: %d bytes of it are in the error, want at most %d", i+1, n, MaxQuoted)
				}
				if n > 0 {
					total, shown = total+n, shown+1
				}
			}
			if shown > maxUnknownKeys || total > maxUnknownKeys*MaxQuoted {
				t.Errorf("the error holds pieces of %d lines, %d bytes in all: want at most %d lines and %d bytes\n%v",
					shown, total, maxUnknownKeys, maxUnknownKeys*MaxQuoted, err)
			}
			if n := strings.Count(err.Error(), "\n") + 1; n > maxUnknownKeys+3 {
				t.Errorf("the error has %d lines, want at most %d:\n%v", n, maxUnknownKeys+3, err)
			}
		})
	}
}

// TestUnknownKeysAreCountedPastAFew names the first few unknown keys of a
// mapping and counts the rest.
func TestUnknownKeysAreCountedPastAFew(t *testing.T) {
	p := filepath.Join(t.TempDir(), "web.yaml")
	_, err := Parse(p, []byte(minimal+"ready: {a: 1, b: 2, c: 3, d: 4, e: 5}\n"))
	requireFieldError(t, err, p, "ready.a", "unknown key")
	requireFieldError(t, err, p, "ready.c", "unknown key")
	requireFieldError(t, err, p, "ready", "and 2 more unknown keys (known keys: http, notify, command, log, tcp)")
	for _, fe := range fieldErrors(t, err) {
		if fe.Field == "ready.d" || fe.Field == "ready.e" {
			t.Errorf("unknown key named past the first %d: %v", maxUnknownKeys, fe)
		}
	}
}

// TestProblemsAreCountedPastMaxErrors lists the first maxErrors problems of
// a file and counts the rest.
func TestProblemsAreCountedPastMaxErrors(t *testing.T) {
	var env strings.Builder
	for i := range 50 {
		fmt.Fprintf(&env, "  %d-bad: x\n", i+10)
	}
	p := filepath.Join(t.TempDir(), "web.yaml")
	_, err := Parse(p, []byte(minimal+"env:\n"+env.String()))
	errs := fieldErrors(t, err)
	if len(errs) != maxErrors+1 {
		t.Fatalf("%d errors, want %d and a count of the rest:\n%v", len(errs), maxErrors+1, err)
	}
	requireFieldError(t, err, p, "", fmt.Sprintf("and %d more problems", 50-maxErrors))
}

// TestLongValuesAreQuotedShort: a bad value is quoted in its error, cut to
// MaxQuoted bytes.
func TestLongValuesAreQuotedShort(t *testing.T) {
	long := strings.Repeat("s3cr3t", 50)
	cases := []struct{ field, yaml string }{
		{"mode", "mode: " + long + "\n"},
		{"listen", "listen: " + long + ":80\n"},
		{"ready.http", "ready: {http: " + long + "}\n"},
		{"wake[0].cron", "wake: [{cron: '" + long + " * * * *'}]\n"},
		{"env." + Quote(long+"!"), "env: {" + long + "!: x}\n"},
		{"", long + "_key: 1\n" + long + ":\n"},
	}
	for _, c := range cases {
		p := filepath.Join(t.TempDir(), "web.yaml")
		data := minimal + c.yaml
		if strings.HasPrefix(c.yaml, "listen") {
			data = "command: x\n" + c.yaml
		}
		_, err := Parse(p, []byte(data))
		if err == nil {
			t.Errorf("%s: accepted", c.field)
			continue
		}
		for _, n := range leaked([]string{long}, err.Error()) {
			if n > MaxQuoted {
				t.Errorf("%s: %d bytes of the value in the error, want at most %d: %v", c.field, n, MaxQuoted, err)
			}
		}
	}
}
