// Package config reads, defaults and validates Herd's configuration files:
// a server's herd.yaml (Server, with its drivers, TLS and API tokens) and a
// host agent's agent.yaml (Agent). Both go through one loader: decode
// (unknown keys refused), command-line overrides, defaults, validation that
// names every bad field with its file position, then the secrets the file
// points at.
package config

import (
	"fmt"
	"net"
	"net/url"
	"os"
	"regexp"
	"slices"
	"strings"

	"github.com/herd-project/herd/cluster/gossip"
	"github.com/herd-project/herd/policy/yamlfile"
)

// Default ports: API and metrics, raft, gossip.
const (
	DefaultAPIPort    = 7420
	DefaultRaftPort   = 7421
	DefaultGossipPort = 7422
)

// file is what the loader needs of a configuration file's type.
type file interface {
	// ApplyDefaults fills every unset field with its default.
	ApplyDefaults()
	// Validate returns every problem, each naming its field.
	Validate(doc *yamlfile.Doc) error
	// loadSecrets reads the files the configuration points at.
	loadSecrets(doc *yamlfile.Doc) error
}

// load reads, decodes, defaults and validates a configuration file.
func load[T any, P interface {
	*T
	file
}](path string, overrides []func(P)) (P, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("read config: %w", err)
	}
	return parse(path, data, overrides)
}

// parse is load for text already read. Overrides (command-line flags) are
// applied before defaults and validation.
func parse[T any, P interface {
	*T
	file
}](name string, data []byte, overrides []func(P)) (P, error) {
	c := P(new(T))
	doc, err := yamlfile.Decode(name, data, c)
	if err != nil {
		return nil, err
	}
	for _, o := range overrides {
		o(c)
	}
	c.ApplyDefaults()
	if err := c.Validate(doc); err != nil {
		return nil, err
	}
	if err := c.loadSecrets(doc); err != nil {
		return nil, err
	}
	return c, nil
}

// problems collects a file's errors, each naming its field (and, when the
// document is known, its position).
type problems struct {
	doc  *yamlfile.Doc
	errs yamlfile.Errors
}

func (p *problems) add(path, format string, args ...any) {
	p.errs = append(p.errs, fieldError(p.doc, path, format, args...))
}

// err is nil when nothing was added.
func (p *problems) err() error {
	if len(p.errs) > 0 {
		return p.errs
	}
	return nil
}

// fieldError positions an error at path when the document is known.
func fieldError(doc *yamlfile.Doc, path, format string, args ...any) *yamlfile.Error {
	if doc == nil {
		return &yamlfile.Error{File: "config", Path: path, Msg: fmt.Sprintf(format, args...)}
	}
	return doc.At(path, format, args...)
}

// Log is the log section of both files.
type Log struct {
	Level  string `yaml:"level"`
	Format string `yaml:"format"`
}

func (l *Log) applyDefaults() {
	if l.Level == "" {
		l.Level = "info"
	}
	if l.Format == "" {
		l.Format = "text"
	}
}

func (l Log) validate(p *problems) {
	switch l.Level {
	case "debug", "info", "warn", "error":
	default:
		p.add("log.level", "%q is not one of debug, info, warn, error", l.Level)
	}
	switch l.Format {
	case "text", "json":
	default:
		p.add("log.format", "%q is not one of text, json", l.Format)
	}
}

// Gossip is the gossip section of both files: the membership pool of
// servers and agents (memberlist).
type Gossip struct {
	Listen    string `yaml:"listen"`
	Advertise string `yaml:"advertise"`
	// KeyringFile holds base64 keys, one a line, the primary first:
	// with it every gossip message is encrypted and others refused.
	KeyringFile string `yaml:"keyring_file"`
	// Join lists other members' gossip addresses (host:port).
	Join []string `yaml:"join"`
	// Profile is memberlist's timing: lan (default) or local (a fast,
	// quiet management network: a crashed host's agent is declared
	// dead sooner). Servers and agents should use the same.
	Profile string `yaml:"profile"`
}

// validateAddrs checks the addresses and the profile.
func (g Gossip) validateAddrs(p *problems) {
	if _, _, err := net.SplitHostPort(g.Listen); err != nil {
		p.add("gossip.listen", "%q is not host:port", g.Listen)
	}
	if g.Advertise != "" {
		if _, _, err := net.SplitHostPort(g.Advertise); err != nil {
			p.add("gossip.advertise", "%q is not host:port", g.Advertise)
		}
	}
	for i, j := range g.Join {
		if _, _, err := net.SplitHostPort(j); err != nil {
			p.add(fmt.Sprintf("gossip.join[%d]", i), "%q is not host:port", j)
		}
	}
	if g.Profile != "" && !slices.Contains(gossip.Profiles, g.Profile) {
		p.add("gossip.profile", "%q is not a profile: want one of %s", g.Profile, strings.Join(gossip.Profiles, ", "))
	}
}

// validateKeyring checks the keyring file, or says why it is needed.
func (g Gossip) validateKeyring(p *problems, required bool, why string) {
	if g.KeyringFile != "" {
		if _, err := gossip.ReadKeyring(g.KeyringFile); err != nil {
			p.add("gossip.keyring_file", "%v", err)
		}
	} else if required {
		p.add("gossip.keyring_file", "must be set: %s", why)
	}
}

var nodeNameRE = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._-]{0,62}$`)

// ValidNodeName reports whether s may name a server, an agent or a host:
// letters, digits, '.', '_', '-', at most 63, starting with a letter or
// digit.
func ValidNodeName(s string) bool { return nodeNameRE.MatchString(s) }

// NormalizeAPIAddr turns "host:port" or a URL into a base URL.
func NormalizeAPIAddr(s string) (string, error) { return NormalizeAPIAddrScheme(s, "http") }

// NormalizeAPIAddrScheme is NormalizeAPIAddr with the scheme a bare
// host:port gets.
func NormalizeAPIAddrScheme(s, scheme string) (string, error) {
	if !strings.Contains(s, "://") {
		if _, _, err := net.SplitHostPort(s); err != nil {
			s = net.JoinHostPort(s, fmt.Sprint(DefaultAPIPort))
		}
		s = scheme + "://" + s
	}
	u, err := url.Parse(s)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return "", fmt.Errorf("%q is not host:port or an http(s) URL", s)
	}
	return strings.TrimRight(u.String(), "/"), nil
}
