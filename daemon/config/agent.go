package config

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/herd-project/herd/policy/yamlfile"
)

// Agent defaults.
const (
	DefaultAgentConfigFile = "/etc/herd/agent.yaml"
	DefaultAgentStateFile  = "/var/lib/herd-agent/lease.json"
)

// Agent is an agent's configuration (agent.yaml), one per hypervisor
// host.
type Agent struct {
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
	// Gossip: as the servers' gossip section, with their keyring.
	Gossip Gossip `yaml:"gossip"`
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
	Log       Log    `yaml:"log"`

	token string
}

// Token is the agent's API token, read from TokenFile.
func (c *Agent) Token() string { return c.token }

// ApplyDefaults fills every unset field with its default.
func (c *Agent) ApplyDefaults() {
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
	c.Log.applyDefaults()
}

// Validate checks every field, naming it (with its file position when doc
// is known).
func (c *Agent) Validate(doc *yamlfile.Doc) error {
	p := &problems{doc: doc}
	bad := p.add
	if !ValidNodeName(c.NodeName) {
		bad("node_name", "%q is not a valid node name (letters, digits, '.', '_', '-'; at most 63)", c.NodeName)
	}
	if !ValidNodeName(c.Host) {
		bad("host", "%q is not a valid host name", c.Host)
	}
	if len(c.Servers) == 0 && len(c.Gossip.Join) == 0 {
		bad("servers", "list the servers' API addresses (or gossip.join to learn them)")
	}
	for i, s := range c.Servers {
		if _, err := NormalizeAPIAddr(s); err != nil {
			bad(fmt.Sprintf("servers[%d]", i), "%v", err)
		}
	}
	c.Gossip.validateAddrs(p)
	c.Gossip.validateKeyring(p, true, "gossip is encrypted, with the servers' keyring")
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
	c.Log.validate(p)
	return p.err()
}

// LoadAgent reads and validates an agent.yaml; errors name
// file:line:column and the field.
func LoadAgent(path string) (*Agent, error) { return load[Agent](path, nil) }

// ParseAgent parses and validates agent.yaml text.
func ParseAgent(file string, data []byte) (*Agent, error) { return parse[Agent](file, data, nil) }

// loadSecrets reads the agent's API token.
func (c *Agent) loadSecrets(doc *yamlfile.Doc) error {
	if c.TokenFile != "" {
		b, err := os.ReadFile(c.TokenFile)
		if err != nil {
			return fieldError(doc, "token_file", "cannot read: %v", err)
		}
		c.token = strings.TrimSpace(string(b))
	}
	return nil
}
