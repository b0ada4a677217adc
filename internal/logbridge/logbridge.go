// Package logbridge hands log/slog to the hashicorp libraries: an hclog
// logger for raft and a standard library logger for memberlist.
package logbridge

import (
	"context"
	"io"
	"log"
	"log/slog"
	"strings"

	"github.com/hashicorp/go-hclog"
)

// HCLogger adapts a *slog.Logger to the hclog.Logger that raft expects, so
// that every line Herd writes goes through one handler.
func HCLogger(l *slog.Logger, name string) hclog.Logger {
	return &hcAdapter{l: l.With("component", name), name: name, level: hclog.Info}
}

type hcAdapter struct {
	l     *slog.Logger
	name  string
	level hclog.Level
	args  []any
}

func toSlog(level hclog.Level) slog.Level {
	switch level {
	case hclog.Trace, hclog.Debug:
		return slog.LevelDebug
	case hclog.Warn:
		return slog.LevelWarn
	case hclog.Error:
		return slog.LevelError
	default:
		return slog.LevelInfo
	}
}

func (a *hcAdapter) Log(level hclog.Level, msg string, args ...any) {
	if level < a.level {
		return
	}
	a.l.Log(context.Background(), toSlog(level), msg, args...)
}

func (a *hcAdapter) Trace(msg string, args ...any) { a.Log(hclog.Trace, msg, args...) }
func (a *hcAdapter) Debug(msg string, args ...any) { a.Log(hclog.Debug, msg, args...) }
func (a *hcAdapter) Info(msg string, args ...any)  { a.Log(hclog.Info, msg, args...) }
func (a *hcAdapter) Warn(msg string, args ...any)  { a.Log(hclog.Warn, msg, args...) }
func (a *hcAdapter) Error(msg string, args ...any) { a.Log(hclog.Error, msg, args...) }
func (a *hcAdapter) IsTrace() bool                 { return a.level <= hclog.Trace }
func (a *hcAdapter) IsDebug() bool                 { return a.level <= hclog.Debug }
func (a *hcAdapter) IsInfo() bool                  { return a.level <= hclog.Info }
func (a *hcAdapter) IsWarn() bool                  { return a.level <= hclog.Warn }
func (a *hcAdapter) IsError() bool                 { return a.level <= hclog.Error }
func (a *hcAdapter) ImpliedArgs() []any            { return a.args }
func (a *hcAdapter) Name() string                  { return a.name }
func (a *hcAdapter) SetLevel(level hclog.Level)    { a.level = level }
func (a *hcAdapter) GetLevel() hclog.Level         { return a.level }

func (a *hcAdapter) With(args ...any) hclog.Logger {
	c := *a
	c.l = a.l.With(args...)
	c.args = append(append([]any{}, a.args...), args...)
	return &c
}

func (a *hcAdapter) Named(name string) hclog.Logger {
	if a.name != "" {
		name = a.name + "." + name
	}
	return a.ResetNamed(name)
}

func (a *hcAdapter) ResetNamed(name string) hclog.Logger {
	c := *a
	c.name = name
	c.l = a.l.With("subcomponent", name)
	return &c
}

func (a *hcAdapter) StandardLogger(*hclog.StandardLoggerOptions) *log.Logger {
	return log.New(a.StandardWriter(nil), "", 0)
}

func (a *hcAdapter) StandardWriter(*hclog.StandardLoggerOptions) io.Writer {
	return writerFunc(func(p []byte) (int, error) {
		a.Info(strings.TrimSpace(string(p)))
		return len(p), nil
	})
}

type writerFunc func([]byte) (int, error)

func (f writerFunc) Write(p []byte) (int, error) { return f(p) }

// StdLogger returns a *log.Logger (what memberlist takes) that writes
// through l, parsing memberlist's "[LEVEL] " prefixes into slog levels.
func StdLogger(l *slog.Logger, name string) *log.Logger {
	l = l.With("component", name)
	return log.New(writerFunc(func(p []byte) (int, error) {
		msg := strings.TrimSpace(string(p))
		level := slog.LevelInfo
		for prefix, lv := range map[string]slog.Level{"[DEBUG] ": slog.LevelDebug, "[WARN] ": slog.LevelWarn, "[ERR] ": slog.LevelError, "[ERROR] ": slog.LevelError, "[INFO] ": slog.LevelInfo} {
			if i := strings.Index(msg, prefix); i >= 0 {
				level, msg = lv, msg[i+len(prefix):]
				break
			}
		}
		l.Log(context.Background(), level, msg)
		return len(p), nil
	}), "", 0)
}
