package main

import (
	"fmt"
	"strings"
	"unicode"
	"unicode/utf8"
)

// esc makes a stored string safe to print on a terminal: control
// characters (escape sequences, bells, NULs, line breaks, tabs that would
// break a table's columns) and invalid UTF-8 are shown as Go escapes, so
// what a host name, reason or message says cannot retitle or recolour
// the operator's terminal.
func esc(s string) string {
	clean := true
	for _, r := range s {
		if r == utf8.RuneError || unicode.IsControl(r) {
			clean = false
			break
		}
	}
	if clean {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); {
		r, n := utf8.DecodeRuneInString(s[i:])
		switch {
		case r == utf8.RuneError && n <= 1:
			fmt.Fprintf(&b, `\x%02x`, s[i])
		case r == '\n':
			b.WriteString(`\n`)
		case r == '\r':
			b.WriteString(`\r`)
		case r == '\t':
			b.WriteString(`\t`)
		case r == 0x1b:
			b.WriteString(`\e`)
		case r == 0x07:
			b.WriteString(`\a`)
		case r == 0:
			b.WriteString(`\0`)
		case unicode.IsControl(r) && r < 0x80:
			fmt.Fprintf(&b, `\x%02x`, r)
		case unicode.IsControl(r):
			fmt.Fprintf(&b, `\u%04x`, r)
		default:
			b.WriteString(s[i : i+n])
		}
		i += n
	}
	return b.String()
}

// escLines escapes each line of a multi-line message (an error with its
// blockers) and keeps the line breaks.
func escLines(s string) string {
	lines := strings.Split(s, "\n")
	for i, l := range lines {
		lines[i] = esc(l)
	}
	return strings.Join(lines, "\n")
}
