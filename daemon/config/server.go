package config

import (
	"errors"
	"fmt"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/herd-project/herd/policy/yamlfile"
)

// Server defaults.
const (
	DefaultConfigFile = "/etc/herd/herd.yaml"
	DefaultPolicyFile = "/etc/herd/policy.yaml"
	DefaultDataDir    = "/var/lib/herd"
)

// Server is a server's node configuration (herd.yaml).
type Server struct {
	// NodeName is this server's unique name; the host name by default.
	NodeName string `yaml:"node_name"`
	DataDir  string `yaml:"data_dir"`
	API      struct {
		// Listen is where the API and /metrics are served.
		Listen string `yaml:"listen"`
		// Advertise is the URL other servers and clients reach the API at.
		Advertise string `yaml:"advertise"`
		// TokensFile lists the API tokens and their roles; required
		// outside dev mode.
		TokensFile string `yaml:"tokens_file"`
		// ServerTokenFile holds the token servers use for their own calls
		// to each other (role admin); the same on every server.
		ServerTokenFile string `yaml:"server_token_file"`
		// MetricsOpen serves /metrics without a token.
		MetricsOpen bool `yaml:"metrics_open"`
		// WriteRate and WriteBurst limit writes per client (token or
		// address): requests per second, and how many may come at once.
		WriteRate  float64 `yaml:"write_rate"`
		WriteBurst int     `yaml:"write_burst"`
	} `yaml:"api"`
	// TLS secures the API and raft; all three files or none.
	TLS  TLS `yaml:"tls"`
	Raft struct {
		Listen    string `yaml:"listen"`
		Advertise string `yaml:"advertise"`
		// BootstrapExpect is how many servers form a new cluster; 0 means
		// join an existing one.
		BootstrapExpect int `yaml:"bootstrap_expect"`
		// Join lists other servers' API addresses (host:port or URL).
		Join []string `yaml:"join"`
		// SnapshotThreshold is how many log entries trigger a snapshot.
		SnapshotThreshold uint64 `yaml:"snapshot_threshold"`
		// ServerStabilization is how long a joining server must stay caught
		// up and in touch with the leader before it is promoted from
		// non-voter to voter (10s).
		ServerStabilization time.Duration `yaml:"server_stabilization"`
		// DeadServerTimeout is how long a non-voter may go without
		// answering the leader before it is removed (60s). Voters are
		// never removed automatically: herd server remove ID does it.
		DeadServerTimeout time.Duration `yaml:"dead_server_timeout"`
	} `yaml:"raft"`
	// Gossip is the membership pool of servers and agents (memberlist).
	// Off when listen is empty.
	Gossip    Gossip   `yaml:"gossip"`
	Drivers   []Driver `yaml:"drivers"`
	Inventory struct {
		SyncInterval time.Duration `yaml:"sync_interval"`
		Timeout      time.Duration `yaml:"timeout"`
	} `yaml:"inventory"`
	Events struct {
		Retention int `yaml:"retention"`
	} `yaml:"events"`
	// PolicyFile is this server's policy file: reloaded on SIGHUP and when
	// it changes, and put in force cluster-wide when valid.
	PolicyFile string `yaml:"policy_file"`
	Log        Log    `yaml:"log"`

	// Dev is set by -dev, never by a file.
	Dev bool `yaml:"-"`

	// tokens and serverToken are read from the API token files.
	tokens      *Tokens
	serverToken string
}

// Tokens are the API tokens of api.tokens_file (and the servers' own);
// nil without auth (dev mode).
func (c *Server) Tokens() *Tokens { return c.tokens }

// ServerToken is the token servers use for their calls to each other.
func (c *Server) ServerToken() string { return c.serverToken }

// Driver names one hypervisor manager.
type Driver struct {
	Name string `yaml:"name"`
	Type string `yaml:"type"` // vsphere
	URL  string `yaml:"url"`
	// Username and the file holding the password: secrets never sit in herd.yaml.
	Username     string `yaml:"username"`
	PasswordFile string `yaml:"password_file"`
	Insecure     bool   `yaml:"insecure"`
	Datacenter   string `yaml:"datacenter"`

	// libvirt: one entry per host, and the driver's tuning.
	Hosts []LibvirtHost `yaml:"hosts"`
	// CallTimeout bounds every libvirt call (default 30s).
	CallTimeout time.Duration `yaml:"call_timeout"`
	// BandwidthMiBs caps live migrations (0: unlimited).
	BandwidthMiBs uint64 `yaml:"bandwidth_mibs"`

	// Password is read from PasswordFile (dev mode and tests set it).
	Password string `yaml:"-"`
}

// TLS is the tls section: the API serves HTTPS, and raft between
// servers uses mutual TLS, all with certificates signed by CAFile.
type TLS struct {
	CertFile string `yaml:"cert_file"`
	KeyFile  string `yaml:"key_file"`
	CAFile   string `yaml:"ca_file"`
	// VerifyClients requires API clients to present a certificate signed
	// by the CA (raft always requires one).
	VerifyClients bool `yaml:"verify_clients"`
}

// Enabled reports whether TLS is configured.
func (t TLS) Enabled() bool { return t.CertFile != "" || t.KeyFile != "" || t.CAFile != "" }

// LibvirtHost is one libvirt host.
type LibvirtHost struct {
	Name string `yaml:"name"`
	// URI: qemu+tcp://host:16509/system, qemu+unix:///system?socket=…, or qemu:///system.
	URI   string `yaml:"uri"`
	Group string `yaml:"group"`
	// PeerURI is how other hosts' libvirtd reach this one (default: uri).
	PeerURI string `yaml:"peer_uri"`
	// MigrationAddress is where QEMU migration streams to this host go.
	MigrationAddress string `yaml:"migration_address"`
}

// DefaultServer returns a server config with every default set.
func DefaultServer() *Server {
	c := &Server{}
	c.ApplyDefaults()
	return c
}

// ApplyDefaults fills every unset field with its default.
func (c *Server) ApplyDefaults() {
	if c.NodeName == "" {
		c.NodeName, _ = os.Hostname()
	}
	if c.DataDir == "" {
		c.DataDir = DefaultDataDir
	}
	if c.API.Listen == "" {
		c.API.Listen = fmt.Sprintf("0.0.0.0:%d", DefaultAPIPort)
	}
	if c.Raft.Listen == "" {
		c.Raft.Listen = fmt.Sprintf("0.0.0.0:%d", DefaultRaftPort)
	}
	if c.Raft.ServerStabilization == 0 {
		c.Raft.ServerStabilization = 10 * time.Second
	}
	if c.Raft.DeadServerTimeout == 0 {
		c.Raft.DeadServerTimeout = time.Minute
	}
	if c.API.WriteRate == 0 {
		c.API.WriteRate = 10
	}
	if c.API.WriteBurst == 0 {
		c.API.WriteBurst = 50
	}
	if c.Inventory.SyncInterval == 0 {
		c.Inventory.SyncInterval = 15 * time.Second
	}
	if c.Inventory.Timeout == 0 {
		c.Inventory.Timeout = 30 * time.Second
	}
	if c.Events.Retention == 0 {
		c.Events.Retention = 20000
	}
	if c.PolicyFile == "" {
		c.PolicyFile = DefaultPolicyFile
	}
	c.Log.applyDefaults()
}

// Validate checks every field and returns all problems, each naming its
// field (and, when doc is known, the file position).
func (c *Server) Validate(doc *yamlfile.Doc) error {
	p := &problems{doc: doc}
	bad := p.add
	if !ValidNodeName(c.NodeName) {
		bad("node_name", "%q is not a valid node name (letters, digits, '.', '_', '-'; at most 63)", c.NodeName)
	}
	if !filepath.IsAbs(c.DataDir) {
		bad("data_dir", "%q must be an absolute path", c.DataDir)
	}
	if _, _, err := net.SplitHostPort(c.API.Listen); err != nil {
		bad("api.listen", "%q is not host:port", c.API.Listen)
	}
	if c.API.Advertise != "" {
		if u, err := url.Parse(c.API.Advertise); err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			bad("api.advertise", "%q is not an http(s) URL", c.API.Advertise)
		}
	}
	c.validateSecurity(bad)
	if _, _, err := net.SplitHostPort(c.Raft.Listen); err != nil {
		bad("raft.listen", "%q is not host:port", c.Raft.Listen)
	}
	if c.Raft.Advertise != "" {
		if h, p, err := net.SplitHostPort(c.Raft.Advertise); err != nil || h == "" || p == "" || net.ParseIP(h) != nil && net.ParseIP(h).IsUnspecified() {
			bad("raft.advertise", "%q is not a reachable host:port", c.Raft.Advertise)
		}
	} else if h, _, err := net.SplitHostPort(c.Raft.Listen); err == nil && (h == "" || net.ParseIP(h) != nil && net.ParseIP(h).IsUnspecified()) && !c.Dev {
		bad("raft.advertise", "must be set when raft.listen (%q) is a wildcard address", c.Raft.Listen)
	}
	if g := c.Gossip; g.Listen != "" {
		g.validateAddrs(p)
		g.validateKeyring(p, !c.Dev, "gossip is encrypted outside -dev")
	} else if len(c.Gossip.Join) > 0 || c.Gossip.KeyringFile != "" {
		bad("gossip.listen", "must be set when gossip.join or gossip.keyring_file is")
	}
	if c.Raft.ServerStabilization < 0 || c.Raft.ServerStabilization > time.Hour {
		bad("raft.server_stabilization", "%s is out of range (0 to 1h)", c.Raft.ServerStabilization)
	}
	if c.Raft.DeadServerTimeout < time.Second || c.Raft.DeadServerTimeout > 24*time.Hour {
		bad("raft.dead_server_timeout", "%s is out of range (1s to 24h)", c.Raft.DeadServerTimeout)
	}
	if c.Raft.BootstrapExpect < 0 || c.Raft.BootstrapExpect > 7 {
		bad("raft.bootstrap_expect", "%d is out of range (0 to 7)", c.Raft.BootstrapExpect)
	}
	if c.Raft.BootstrapExpect == 0 && len(c.Raft.Join) == 0 && len(c.Gossip.Join) == 0 && !c.Dev {
		bad("raft.bootstrap_expect", "set bootstrap_expect (1 for a single server, 3 or 5 for a new cluster) or list servers to join in raft.join or gossip.join")
	}
	if c.Raft.BootstrapExpect > 1 && len(c.Raft.Join) == 0 {
		bad("raft.join", "must list the other servers when bootstrap_expect is %d", c.Raft.BootstrapExpect)
	}
	for i, j := range c.Raft.Join {
		if _, err := NormalizeAPIAddr(j); err != nil {
			bad(fmt.Sprintf("raft.join[%d]", i), "%v", err)
		}
	}
	seen := map[string]bool{}
	for i, d := range c.Drivers {
		p := fmt.Sprintf("drivers[%d]", i)
		if d.Name == "" {
			bad(p+".name", "must be set")
		} else if seen[d.Name] {
			bad(p+".name", "%q is used twice", d.Name)
		}
		seen[d.Name] = true
		switch d.Type {
		case "vsphere":
			if u, err := url.Parse(d.URL); err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
				bad(p+".url", "%q is not an http(s) URL", d.URL)
			}
			if d.Username == "" && !c.Dev {
				bad(p+".username", "must be set")
			}
			if d.PasswordFile == "" && !c.Dev {
				bad(p+".password_file", "must be set")
			} else if d.PasswordFile != "" {
				if _, err := os.Stat(d.PasswordFile); err != nil {
					bad(p+".password_file", "cannot read: %v", err)
				}
			}
		case "libvirt":
			if len(d.Hosts) == 0 {
				bad(p+".hosts", "must list the libvirt hosts")
			}
			names := map[string]bool{}
			for j, h := range d.Hosts {
				hp := fmt.Sprintf("%s.hosts[%d]", p, j)
				if !ValidNodeName(h.Name) {
					bad(hp+".name", "%q is not a valid host name", h.Name)
				} else if names[h.Name] {
					bad(hp+".name", "%q is listed twice", h.Name)
				}
				names[h.Name] = true
				if !strings.HasPrefix(h.URI, "qemu") {
					bad(hp+".uri", "%q is not a qemu libvirt URI (qemu+tcp://…, qemu+unix://…, qemu:///system)", h.URI)
				}
			}
			if d.CallTimeout < 0 {
				bad(p+".call_timeout", "%s must not be negative", d.CallTimeout)
			}
		case "":
			bad(p+".type", "must be set (vsphere or libvirt)")
		default:
			bad(p+".type", "unknown driver type %q (known: vsphere, libvirt)", d.Type)
		}
	}
	if c.Inventory.SyncInterval < time.Second {
		bad("inventory.sync_interval", "%s is too short (at least 1s)", c.Inventory.SyncInterval)
	}
	if c.Inventory.Timeout < time.Second {
		bad("inventory.timeout", "%s is too short (at least 1s)", c.Inventory.Timeout)
	}
	if c.Events.Retention < 100 || c.Events.Retention > 1000000 {
		bad("events.retention", "%d is out of range (100 to 1000000)", c.Events.Retention)
	}
	if !filepath.IsAbs(c.PolicyFile) {
		bad("policy_file", "%q must be an absolute path", c.PolicyFile)
	}
	c.Log.validate(p)
	return p.err()
}

// LoadServer reads and validates a herd.yaml. Errors name
// file:line:column and the field. Overrides (command-line flags) are
// applied before defaults and validation.
func LoadServer(path string, overrides ...func(*Server)) (*Server, error) {
	return load(path, overrides)
}

// ParseServer parses and validates herd.yaml text.
func ParseServer(file string, data []byte, overrides ...func(*Server)) (*Server, error) {
	return parse(file, data, overrides)
}

// validateSecurity checks the api token and tls keys.
func (c *Server) validateSecurity(bad func(path, format string, args ...any)) {
	multi := c.Raft.BootstrapExpect > 1 || len(c.Raft.Join) > 0
	switch {
	case c.API.TokensFile == "" && !c.Dev:
		bad("api.tokens_file", "must be set: every API request needs a token (see configs/herd.yaml)")
	case c.API.TokensFile != "" && !filepath.IsAbs(c.API.TokensFile):
		bad("api.tokens_file", "%q must be an absolute path", c.API.TokensFile)
	}
	switch {
	case c.API.ServerTokenFile != "" && c.API.TokensFile == "":
		bad("api.server_token_file", "goes with api.tokens_file")
	case c.API.ServerTokenFile != "" && !filepath.IsAbs(c.API.ServerTokenFile):
		bad("api.server_token_file", "%q must be an absolute path", c.API.ServerTokenFile)
	case c.API.ServerTokenFile == "" && c.API.TokensFile != "" && multi:
		bad("api.server_token_file", "must be set when servers call each other (raft.bootstrap_expect > 1 or raft.join)")
	}
	if c.API.WriteRate < 0 || c.API.WriteRate > 10000 {
		bad("api.write_rate", "%g is out of range (0 to 10000 per second)", c.API.WriteRate)
	}
	if c.API.WriteBurst < 1 || c.API.WriteBurst > 100000 {
		bad("api.write_burst", "%d is out of range (1 to 100000)", c.API.WriteBurst)
	}
	t := c.TLS
	if !t.Enabled() {
		if t.VerifyClients {
			bad("tls.verify_clients", "needs tls.cert_file, tls.key_file and tls.ca_file")
		}
		return
	}
	missing := false
	for _, f := range []struct{ key, val string }{{"tls.cert_file", t.CertFile}, {"tls.key_file", t.KeyFile}, {"tls.ca_file", t.CAFile}} {
		if f.val == "" {
			bad(f.key, "must be set with the other tls files")
			missing = true
		}
	}
	if !missing {
		if _, err := t.Load(); err != nil {
			var fe *tlsFileError
			if errors.As(err, &fe) {
				bad(fe.key, "%v", fe.err)
			} else {
				bad("tls", "%v", err)
			}
		}
	}
	if strings.HasPrefix(c.API.Advertise, "http://") {
		bad("api.advertise", "%q must be an https URL when tls is set", c.API.Advertise)
	}
	for i, j := range c.Raft.Join {
		if strings.HasPrefix(j, "http://") {
			bad(fmt.Sprintf("raft.join[%d]", i), "%q must be https (or host:port) when tls is set", j)
		}
	}
}

// LoadTokens reads the API token files of a config built in code (a
// loaded one has them already).
func (c *Server) LoadTokens() error { return c.loadTokens(nil) }

// loadSecrets reads the API token files and the drivers' passwords.
func (c *Server) loadSecrets(doc *yamlfile.Doc) error {
	if err := c.loadTokens(doc); err != nil {
		return err
	}
	for i := range c.Drivers {
		if f := c.Drivers[i].PasswordFile; f != "" {
			b, err := os.ReadFile(f)
			if err != nil {
				return fieldError(doc, fmt.Sprintf("drivers[%d].password_file", i), "cannot read: %v", err)
			}
			c.Drivers[i].Password = strings.TrimRight(string(b), "\r\n")
		}
	}
	return nil
}

// loadTokens reads the API token files.
func (c *Server) loadTokens(doc *yamlfile.Doc) error {
	if c.API.TokensFile == "" {
		return nil
	}
	set, err := loadTokens(c.API.TokensFile, c.API.ServerTokenFile)
	if err != nil {
		var ye yamlfile.Errors
		if errors.As(err, &ye) {
			return err
		}
		return fieldError(doc, "api.tokens_file", "%v", err)
	}
	c.tokens = set
	if c.API.ServerTokenFile != "" {
		b, err := readSecret(c.API.ServerTokenFile)
		if err != nil {
			return fieldError(doc, "api.server_token_file", "%v", err)
		}
		c.serverToken = string(b)
	}
	return nil
}
