package cluster

import "time"

// CmdSetPolicy replaces the policy in force.
const CmdSetPolicy CommandType = 20

// Policy is the policy document in force, as the bytes that were applied:
// cluster/ stores it without knowing its schema. Version counts changes.
type Policy struct {
	Version int       `json:"version"`
	Hash    string    `json:"hash"`
	YAML    []byte    `json:"yaml"`
	Source  string    `json:"source"`
	Updated time.Time `json:"updated"`
}

// SetPolicy puts a validated policy in force. IfVersion, when above zero,
// makes the change conditional on the version in force (so two servers
// reloading at once cannot silently overwrite each other).
type SetPolicy struct {
	YAML      []byte    `json:"yaml"`
	Hash      string    `json:"hash"`
	Source    string    `json:"source"`
	IfVersion int       `json:"if_version,omitempty"`
	Time      time.Time `json:"time"`
	Event     Event     `json:"event"`
}

func (*SetPolicy) Type() CommandType { return CmdSetPolicy }

func (s *State) setPolicy(c *SetPolicy) *ApplyError {
	cur := 0
	if s.Policy != nil {
		cur = s.Policy.Version
	}
	if c.IfVersion > 0 && c.IfVersion != cur {
		return conflict("version", "policy version %d is in force, not %d", cur, c.IfVersion)
	}
	if s.Policy != nil && s.Policy.Hash == c.Hash {
		return nil // the same policy again: nothing changes
	}
	s.Policy = &Policy{Version: cur + 1, Hash: c.Hash, YAML: append([]byte(nil), c.YAML...), Source: c.Source, Updated: c.Time}
	s.appendEvents(c.Event)
	return nil
}
