package daemon

import (
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"

	"github.com/herd-project/herd/cluster"
	"github.com/herd-project/herd/policy/yamlfile"
)

// Agent defaults.
const (
	DefaultAgentConfigFile = "/etc/herd/agent.yaml"
	DefaultAgentStateFile  = "/var/lib/herd-agent/lease.json"
)

// AgentConfig is an agent's configuration (agent.yaml), one per hypervisor
// host.
type AgentConfig struct {
	// NodeName is the agent's gossip name; the machine's host name by default.
	NodeName string `yaml:"node_name"`
	// Host is the hypervisor host's name as Herd's inventory knows it
	// (the name in the libvirt driver's hosts list, the ESXi host name);
	// node_name by default.
	Host string `yaml:"host"`
	// Servers lists Herd servers' API addresses (URL or host:port); more
	// are learnt from gossip.
	Servers []string `yaml:"servers"`
	// TokenFile holds the agent's API token (role operate); empty when the
	// servers run without auth.
	TokenFile string `yaml:"token_file"`
	// TLS: the CA that signs the servers' certificates, and a client
	// certificate when the servers verify clients.
	TLS struct {
		CAFile   string `yaml:"ca_file"`
		CertFile string `yaml:"cert_file"`
		KeyFile  string `yaml:"key_file"`
	} `yaml:"tls"`
	Gossip struct {
		Listen      string   `yaml:"listen"`
		Advertise   string   `yaml:"advertise"`
		KeyringFile string   `yaml:"keyring_file"`
		Join        []string `yaml:"join"`
		// Profile is memberlist's timing, as the servers' gossip.profile.
		Profile string `yaml:"profile"`
	} `yaml:"gossip"`
	// Hypervisor is the local hypervisor the agent stops VMs through.
	Hypervisor struct {
		// Type is libvirt.
		Type string `yaml:"type"`
		// URI of the local libvirtd (qemu:///system by default).
		URI string `yaml:"uri"`
	} `yaml:"hypervisor"`
	// StateFile keeps the lease across agent restarts: a restarted agent
	// whose lease ran out stops its VMs before anything else.
	StateFile string `yaml:"state_file"`
	Log       struct {
		Level  string `yaml:"level"`
		Format string `yaml:"format"`
	} `yaml:"log"`

	token string
}

func (c *AgentConfig) applyDefaults() {
	if c.NodeName == "" {
		c.NodeName, _ = os.Hostname()
	}
	if c.Host == "" {
		c.Host = c.NodeName
	}
	if c.Gossip.Listen == "" {
		c.Gossip.Listen = fmt.Sprintf("0.0.0.0:%d", DefaultGossipPort)
	}
	if c.Hypervisor.Type == "" {
		c.Hypervisor.Type = "libvirt"
	}
	if c.Hypervisor.URI == "" {
		c.Hypervisor.URI = "qemu:///system"
	}
	if c.StateFile == "" {
		c.StateFile = DefaultAgentStateFile
	}
	if c.Log.Level == "" {
		c.Log.Level = "info"
	}
	if c.Log.Format == "" {
		c.Log.Format = "text"
	}
}

// Validate checks every field, naming it (with its file position when doc
// is known).
func (c *AgentConfig) Validate(doc *yamlfile.Doc) error {
	var errs yamlfile.Errors
	bad := func(path, format string, args ...any) {
		if doc != nil {
			errs = append(errs, doc.At(path, format, args...))
		} else {
			errs = append(errs, &yamlfile.Error{File: "config", Path: path, Msg: fmt.Sprintf(format, args...)})
		}
	}
	if !nodeNameRE.MatchString(c.NodeName) {
		bad("node_name", "%q is not a valid node name (letters, digits, '.', '_', '-'; at most 63)", c.NodeName)
	}
	if !nodeNameRE.MatchString(c.Host) {
		bad("host", "%q is not a valid host name", c.Host)
	}
	if len(c.Servers) == 0 && len(c.Gossip.Join) == 0 {
		bad("servers", "list the servers' API addresses (or gossip.join to learn them)")
	}
	for i, s := range c.Servers {
		if _, err := normalizeAPIAddr(s); err != nil {
			bad(fmt.Sprintf("servers[%d]", i), "%v", err)
		}
	}
	if _, _, err := net.SplitHostPort(c.Gossip.Listen); err != nil {
		bad("gossip.listen", "%q is not host:port", c.Gossip.Listen)
	}
	if c.Gossip.Advertise != "" {
		if _, _, err := net.SplitHostPort(c.Gossip.Advertise); err != nil {
			bad("gossip.advertise", "%q is not host:port", c.Gossip.Advertise)
		}
	}
	for i, j := range c.Gossip.Join {
		if _, _, err := net.SplitHostPort(j); err != nil {
			bad(fmt.Sprintf("gossip.join[%d]", i), "%q is not host:port", j)
		}
	}
	if !validGossipProfile(c.Gossip.Profile) {
		bad("gossip.profile", "%q is not a profile: want one of %s", c.Gossip.Profile, strings.Join(cluster.GossipProfiles, ", "))
	}
	if c.Gossip.KeyringFile == "" {
		bad("gossip.keyring_file", "must be set: gossip is encrypted, with the servers' keyring")
	} else if _, err := cluster.ReadKeyring(c.Gossip.KeyringFile); err != nil {
		bad("gossip.keyring_file", "%v", err)
	}
	if c.TokenFile != "" {
		if _, err := os.Stat(c.TokenFile); err != nil {
			bad("token_file", "cannot read: %v", err)
		}
	}
	if (c.TLS.CertFile == "") != (c.TLS.KeyFile == "") {
		bad("tls.cert_file", "a client certificate needs both cert_file and key_file")
	}
	switch c.Hypervisor.Type {
	case "libvirt":
		if !strings.HasPrefix(c.Hypervisor.URI, "qemu") {
			bad("hypervisor.uri", "%q is not a qemu libvirt URI (qemu:///system, qemu+unix://…, qemu+tcp://…)", c.Hypervisor.URI)
		}
	default:
		bad("hypervisor.type", "unknown hypervisor type %q (known: libvirt)", c.Hypervisor.Type)
	}
	if !filepath.IsAbs(c.StateFile) {
		bad("state_file", "%q must be an absolute path", c.StateFile)
	}
	switch c.Log.Level {
	case "debug", "info", "warn", "error":
	default:
		bad("log.level", "%q is not one of debug, info, warn, error", c.Log.Level)
	}
	switch c.Log.Format {
	case "text", "json":
	default:
		bad("log.format", "%q is not one of text, json", c.Log.Format)
	}
	if len(errs) > 0 {
		return errs
	}
	return nil
}

// LoadAgentConfig reads and validates an agent.yaml; errors name
// file:line:column and the field.
func LoadAgentConfig(path string) (*AgentConfig, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("read config: %w", err)
	}
	return ParseAgentConfig(path, data)
}

// ParseAgentConfig parses and validates agent config text.
func ParseAgentConfig(file string, data []byte) (*AgentConfig, error) {
	c := &AgentConfig{}
	doc, err := yamlfile.Decode(file, data, c)
	if err != nil {
		return nil, err
	}
	c.applyDefaults()
	if err := c.Validate(doc); err != nil {
		return nil, err
	}
	if c.TokenFile != "" {
		b, err := os.ReadFile(c.TokenFile)
		if err != nil {
			return nil, doc.At("token_file", "cannot read: %v", err)
		}
		c.token = strings.TrimSpace(string(b))
	}
	return c, nil
}
