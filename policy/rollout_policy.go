package policy

import (
	"fmt"
	"strings"
	"time"
)

// RolloutPolicy configures rolling maintenance (herd rollout).
type RolloutPolicy struct {
	// Hooks are the only programs a rollout runs on a host's turn: an API
	// request names one, never a command.
	Hooks []RolloutHook `yaml:"hooks,omitempty" json:"hooks,omitempty"`
}

// RolloutHook is an executable the leader runs for each host of a rollout,
// with HERD_HOST, HERD_ROLLOUT, HERD_HOOK, HERD_WAVE and HERD_ATTEMPT in
// its environment; its output goes to the event log. A zero exit is
// success.
type RolloutHook struct {
	Name string `yaml:"name" json:"name"`
	// Command is the program and its arguments (no shell); "{host}" in
	// an argument is replaced by the host's name.
	Command []string `yaml:"command" json:"command"`
	// Timeout bounds one run; the program is killed after it.
	Timeout time.Duration `yaml:"timeout" json:"timeout"`
}

// DefaultHookTimeout bounds a hook run when the policy does not.
const DefaultHookTimeout = 30 * time.Minute

// Hook returns the hook named name, or nil.
func (p RolloutPolicy) Hook(name string) *RolloutHook {
	for i := range p.Hooks {
		if p.Hooks[i].Name == name {
			return &p.Hooks[i]
		}
	}
	return nil
}

// HookNames lists the hooks' names.
func (p RolloutPolicy) HookNames() []string {
	out := make([]string, 0, len(p.Hooks))
	for _, h := range p.Hooks {
		out = append(out, h.Name)
	}
	return out
}

func rolloutDefaults(d *Document, root node) {
	hn := root.get("rollout").get("hooks")
	for i := range d.Rollout.Hooks {
		orDefault(hn.item(i), "timeout", &d.Rollout.Hooks[i].Timeout, DefaultHookTimeout)
	}
}

func (c *checker) rollout(p RolloutPolicy) {
	c.names("rollout.hooks", len(p.Hooks), func(i int) string { return p.Hooks[i].Name })
	for i, h := range p.Hooks {
		at := fmt.Sprintf("rollout.hooks[%d]", i)
		switch {
		case len(h.Command) == 0 || h.Command[0] == "":
			c.add(at+".command", "missing; the program to run and its arguments, e.g. [/usr/local/sbin/patch-host, \"{host}\"]")
		case !strings.HasPrefix(h.Command[0], "/"):
			c.add(at+".command", "the program must be an absolute path, got %q", h.Command[0])
		}
		c.duration(at+".timeout", h.Timeout)
	}
}

func normalizeRollout(p *RolloutPolicy) {
	if len(p.Hooks) == 0 {
		p.Hooks = nil
	}
}
