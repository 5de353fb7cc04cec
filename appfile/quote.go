package appfile

import (
	"strconv"
	"strings"
	"unicode"
	"unicode/utf8"
)

// MaxQuoted is the most bytes of a file's text one error message quotes. An
// app file may be a symlink to a file that is not one (/etc/shadow parses
// as YAML keys), and errors go to check's output and the daemon's log: a
// few dozen characters name the culprit without copying the file.
const MaxQuoted = 32

// Quote renders a value read from a file for an error message: quoted
// (so that control characters stay on one line) and cut to MaxQuoted bytes
// with "…" when longer.
func Quote(s string) string {
	if len(s) <= MaxQuoted {
		return strconv.Quote(s)
	}
	return strconv.Quote(cut(s, MaxQuoted)) + "…"
}

// Key renders a key read from a file for a field name: as written when it
// is short and printable (env.PATH, ready.tcp), quoted and cut otherwise.
func Key(k string) string {
	if len(k) <= MaxQuoted && k != "" && strings.IndexFunc(k, func(r rune) bool {
		return !unicode.IsPrint(r) || r == utf8.RuneError
	}) < 0 {
		return k
	}
	return Quote(k)
}

// cut returns at most n bytes of s, without splitting a UTF-8 sequence.
func cut(s string, n int) string {
	if len(s) <= n {
		return s
	}
	for n > 0 && !utf8.RuneStart(s[n]) {
		n--
	}
	return s[:n]
}

// maxLibraryMessage bounds the text taken from a parser's or a cron
// library's own error, which may quote the file.
const maxLibraryMessage = 80

// libraryMessage keeps a library's error message on one line and short,
// each word of it cut to MaxQuoted bytes: the words that run long are the
// ones quoted from the file.
func libraryMessage(msg string) string {
	words := strings.Fields(msg)
	for i, w := range words {
		if len(w) > MaxQuoted {
			words[i] = cut(w, MaxQuoted) + "…"
		}
	}
	msg = strings.Join(words, " ")
	if len(msg) > maxLibraryMessage {
		return cut(msg, maxLibraryMessage) + "…"
	}
	return msg
}
