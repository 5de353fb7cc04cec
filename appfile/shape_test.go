package appfile

import (
	"fmt"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
)

// maxParseAlloc is the memory one app file may cost to parse or refuse.
const maxParseAlloc = 20 << 20

// hostileFiles are app files written to cost the parser time and memory:
// nesting, item counts and YAML aliases past the bounds, each at or near the
// 1 MiB file limit or as large as the attack needs. want is a piece of the
// error.
func hostileFiles() []struct{ name, data, want string } {
	nestedTables := func(size int) string {
		var b strings.Builder
		b.WriteString("listen = ':1'\ncommand = 'x'\n")
		for h := "a"; b.Len()+len(h)+3 <= size; h += ".a" {
			b.WriteString("[" + h + "]\n")
		}
		return b.String()
	}
	nested := func(open, close string, size int) string {
		n := size / (len(open) + len(close))
		return strings.Repeat(open, n) + "1" + strings.Repeat(close, n)
	}
	blockNested := func(size int) string {
		var b strings.Builder
		b.WriteString("listen: ':1'\ncommand: x\nenv:\n")
		for indent := " "; b.Len() < size; indent += " " {
			b.WriteString(indent + "- \n")
		}
		return b.String()
	}
	laughs := func() string {
		var b strings.Builder
		b.WriteString("listen: ':1'\ncommand: x\nl0: &l0 [lol, lol, lol, lol, lol, lol, lol, lol, lol, lol]\n")
		for i := 1; i < 10; i++ {
			fmt.Fprintf(&b, "l%d: &l%d [%s*l%d]\n", i, i, strings.Repeat(fmt.Sprintf("*l%d, ", i-1), 9), i-1)
		}
		return b.String()
	}
	// The file: a 100,000-byte string, repeated by alias in
	// command up to 136 KB.
	aliasCommand := func(size int) string {
		var b strings.Builder
		b.WriteString("listen: ':1'\nbig: &big " + strings.Repeat("x", 100_000) + "\ncommand: [echo")
		for b.Len() < size {
			b.WriteString(", *big")
		}
		b.WriteString("]\n")
		return b.String()
	}
	directives := func(size int) string {
		var b strings.Builder
		for i := 0; b.Len() < size; i++ {
			fmt.Fprintf(&b, "%%TAG !t%d! x\n", i)
		}
		return b.String() + "---\nlisten: ':1'\ncommand: x\n"
	}
	// A wake per zone, none of which exists: each try reads the
	// directory of Go's copy of the tz database.
	zones := func(n int) string {
		var b strings.Builder
		b.WriteString("listen: ':1'\ncommand: x\nwake:\n")
		for i := range n {
			fmt.Fprintf(&b, "  - cron: CRON_TZ=Nowhere/Z%d 0 9 * * *\n", i)
		}
		return b.String()
	}
	manyKeys := func(size int) string {
		var b strings.Builder
		for i := 0; b.Len() < size; i++ {
			fmt.Fprintf(&b, "k%d: 1\n", i)
		}
		return b.String()
	}
	const deep = "nesting deeper than 16 levels"
	return []struct{ name, data, want string }{
		{"nested-tables.toml", nestedTables(84_000), deep},
		{"nested-tables-1mib.toml", nestedTables(MaxFileSize), deep},
		{"nested-inline-tables.toml", "a = " + nested("{a = ", "}", 84_000) + "\n", deep},
		{"nested-lists.toml", "a = " + nested("[", "]", 120_000) + "\n", deep},
		{"nested-lists.json", `{"a": ` + nested("[", "]", 120_000) + "}", deep},
		{"nested-lists.yaml", "a: " + nested("[", "]", 120_000) + "\n", "more than 8192 items"},
		{"nested-lists-17.yaml", "listen: ':1'\ncommand: x\nenv: " + nested("[", "]", 2*16) + "\n", "line 3: " + deep},
		{"nested-lists-17.json", `{"a": ` + nested("[", "]", 2*16) + "}", deep},
		{"nested-blocks.yaml", blockNested(120_000), deep},
		{"nested-dotted-key.toml", strings.Repeat("a.", 20_000) + "a = 1\n", deep},
		{"flat-list.yaml", "a: [" + strings.Repeat("1,", MaxFileSize/2-4) + "1]\n", "more than 8192 items"},
		{"flat-list.toml", "a = [" + strings.Repeat("1,", MaxFileSize/2-4) + "1]\n", "more than 8192 items"},
		{"flat-list.json", `{"a": [` + strings.Repeat("1,", MaxFileSize/2-6) + "1]}", "more than 8192 items"},
		{"many-keys.yaml", manyKeys(MaxFileSize), "more than 8192 items"},
		{"zones.yaml", zones(MaxItems/2 - 10), "wake[8].cron: expected a cron schedule"},
		{"directives.yaml", directives(MaxFileSize - 100), "line 9: more than 8 directives"},
		{"laughs.yaml", laughs(), fmt.Sprintf("aliases expand to more than %d items", maxAliasedItems)},
		{"alias-command.yaml", aliasCommand(136_000), "aliases expand to more than 1048576 bytes"},
		{"alias-itself.yaml", "listen: ':1'\ncommand: x\na: &a [*a]\n", "line 3: "},
		// Within the alias bound, but past what exec takes.
		{"alias-command-twice.yaml", "listen: ':1'\ncommand: [echo, &big " + strings.Repeat("x", 100_000) + ", *big]\n",
			"command: expected at most 131072 bytes of command and env together, got 200007"},
	}
}

// TestHostileFilesAreRefusedCheaply parses each hostile file and checks that
// it is refused with the right message naming the file, within the memory
// bound.
func TestHostileFilesAreRefusedCheaply(t *testing.T) {
	dir := t.TempDir()
	for _, c := range hostileFiles() {
		t.Run(c.name, func(t *testing.T) {
			if len(c.data) > MaxFileSize {
				t.Fatalf("test file is %d bytes, past the %d Load reads", len(c.data), MaxFileSize)
			}
			path := filepath.Join(dir, c.name)
			var err error
			alloc := allocated(func() { _, err = Parse(path, []byte(c.data)) })
			if err == nil {
				t.Fatal("accepted")
			}
			if !strings.HasPrefix(err.Error(), path+": ") || !strings.Contains(err.Error(), c.want) {
				t.Errorf("error %q, want one naming %s and saying %q", firstLine(err), path, c.want)
			}
			if alloc > maxParseAlloc {
				t.Errorf("refusing it allocated %d MiB, want at most %d", alloc>>20, maxParseAlloc>>20)
			}
		})
	}
}

// largestShapes are files at the item and alias bounds, which are let
// through to the parsers (some are valid, some are refused for their key x
// or their nesting).
func largestShapes() []struct{ name, data string } {
	const head = "listen: ':1'\ncommand: x\n"
	var keys strings.Builder
	keys.WriteString(head + "env:\n")
	for i := 0; i < MaxItems-10; i++ {
		fmt.Fprintf(&keys, "  K%d: %s\n", i, strings.Repeat("v", 8))
	}
	// Aliases at the item bound, and at the byte bound.
	var aliases, aliasBytes strings.Builder
	aliases.WriteString(head + "jobs:\n  - &job {cron: '@daily', command: x}\n")
	for range maxAliasedItems/5 - 1 {
		aliases.WriteString("  - *job\n")
	}
	aliasBytes.WriteString(head + "jobs:\n  - &job {cron: '@daily', command: " + strings.Repeat("x", 100_000) + "}\n")
	for range MaxAliasBytes/100_000 - 1 {
		aliasBytes.WriteString("  - *job\n")
	}
	// As many wakes in one zone as a file holds.
	var zoned strings.Builder
	zoned.WriteString(head + "wake:\n")
	for range MaxItems/2 - 10 {
		zoned.WriteString("  - cron: CRON_TZ=America/Argentina/Buenos_Aires 0 9 * * *\n")
	}
	// As many jobs as a file holds without aliases.
	var jobs strings.Builder
	jobs.WriteString(head + "jobs:\n")
	for range MaxItems / 6 {
		jobs.WriteString("  - {cron: '@daily', command: x}\n")
	}
	// Lists as long as the item bound lets JSON write them (a colon in a
	// string does not count): checking for duplicates and overlaps must
	// cost their length, not its square.
	listOf := func(format string) string {
		words := make([]string, MaxItems-10)
		for i := range words {
			words[i] = fmt.Sprintf(format, i+1)
		}
		return "[" + strings.Join(words, ", ") + "]"
	}
	return []struct{ name, data string }{
		{"listen.json", `{"command": "x", "listen": ` + listOf(`"127.0.0.1:%d"`) + "}"},
		{"sni.json", `{"command": "x", "listen": ":1", "match": {"sni": ` + listOf(`"a%d.example.com"`) + "}}"},
		{"items.yaml", head + "x: [" + strings.Repeat("1,", MaxItems-10) + "1]\n"},
		{"items.toml", "listen = ':1'\ncommand = 'x'\nx = [" + strings.Repeat("1,", MaxItems-10) + "1]\n"},
		{"items.json", `{"listen": ":1", "command": "x", "x": [` + strings.Repeat("1,", MaxItems-10) + "1]}"},
		{"keys.yaml", keys.String()},
		{"flow-depth.yaml", head + "x: " + strings.Repeat("[", MaxItems-10) + strings.Repeat("]", MaxItems-10) + "\n"},
		{"aliases.yaml", aliases.String()},
		{"alias-bytes.yaml", aliasBytes.String()},
		{"jobs.yaml", jobs.String()},
		{"zoned.yaml", zoned.String()},
		{"long-scalar.yaml", head + "x: " + strings.Repeat("a", MaxFileSize-40) + "\n"},
		// An unknown key of 1 MiB: its hint must not lower it per known key
		// (a copy each).
		{"long-key.yaml", "? " + strings.Repeat("É", MaxFileSize/2-2) + "\n"},
	}
}

// TestLargestAcceptedShapesAreCheap parses the largest shapes within the
// memory bound.
func TestLargestAcceptedShapesAreCheap(t *testing.T) {
	dir := t.TempDir()
	for _, c := range largestShapes() {
		t.Run(c.name, func(t *testing.T) {
			if len(c.data) > MaxFileSize {
				t.Fatalf("test file is %d bytes, past the %d Load reads", len(c.data), MaxFileSize)
			}
			path := filepath.Join(dir, c.name)
			var err error
			alloc := allocated(func() { _, err = Parse(path, []byte(c.data)) })
			if alloc > maxParseAlloc {
				t.Errorf("parsing it allocated %d MiB, want at most %d (error: %v)", alloc>>20, maxParseAlloc>>20, err)
			}
		})
	}
}

// allocated returns the bytes f allocates. The tests that use it do not run
// in parallel, so the count is f's.
func allocated(f func()) uint64 {
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	f()
	runtime.ReadMemStats(&after)
	return after.TotalAlloc - before.TotalAlloc
}

func firstLine(err error) string {
	line, _, _ := strings.Cut(err.Error(), "\n")
	return line
}

// BenchmarkParseBounds times the hostile files and the largest shapes:
// each should take well under 100 ms. The last case is the costliest file
// known: yaml.v3 allocates a 32-byte buffer for each blank in a scalar,
// garbage at once, so that it allocates past the test's bound while using
// little.
func BenchmarkParseBounds(b *testing.B) {
	cases := largestShapes()
	for _, c := range hostileFiles() {
		cases = append(cases, struct{ name, data string }{c.name, c.data})
	}
	cases = append(cases, struct{ name, data string }{"blanks.yaml", "x: " + strings.Repeat("a ", MaxFileSize/2-4) + "\n"})
	for _, c := range cases {
		b.Run(c.name, func(b *testing.B) {
			path := filepath.Join(b.TempDir(), c.name)
			data := []byte(c.data)
			b.ReportAllocs()
			for b.Loop() {
				Parse(path, data)
			}
		})
	}
}
