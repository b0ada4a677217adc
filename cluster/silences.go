package cluster

import "time"

// Alertmanager silence commands. An older server skips them (the flag):
// it loses only the record of a silence, which Alertmanager ends by itself
// when its bounded duration runs out.
const (
	CmdSetSilence   CommandType = 50 | IgnoreUnknownFlag
	CmdClearSilence CommandType = 51 | IgnoreUnknownFlag
)

// Silence is the Alertmanager silence Herd keeps for a host in
// maintenance: the leader extends it before EndsAt and expires it when the
// host leaves maintenance, whichever server leads by then.
type Silence struct {
	Host string `json:"host"`
	// ID is Alertmanager's id of the silence.
	ID string `json:"id"`
	// Operation is the maintenance operation the silence was made or last
	// extended for ("" for an admin status MAINTENANCE set by hand).
	Operation string    `json:"operation,omitempty"`
	StartsAt  time.Time `json:"starts_at"`
	EndsAt    time.Time `json:"ends_at"`
}

// SetSilence records a host's silence as Alertmanager now has it (made or
// extended).
type SetSilence struct {
	Silence Silence `json:"silence"`
	// Event, when its type is set, is appended.
	Event Event `json:"event"`
}

func (*SetSilence) Type() CommandType { return CmdSetSilence }

// ClearSilence forgets a host's silence once Alertmanager expired it. ID
// guards against forgetting a newer silence: a different recorded ID is
// kept.
type ClearSilence struct {
	Host  string `json:"host"`
	ID    string `json:"id"`
	Event Event  `json:"event"`
}

func (*ClearSilence) Type() CommandType { return CmdClearSilence }

func (s *State) applySilence(cmd Command) {
	if s.Silences == nil {
		s.Silences = map[string]*Silence{}
	}
	switch c := cmd.(type) {
	case *SetSilence:
		sl := c.Silence
		s.Silences[sl.Host] = &sl
		if c.Event.Type != "" {
			s.appendEvents(c.Event)
		}
	case *ClearSilence:
		if cur := s.Silences[c.Host]; cur != nil && cur.ID == c.ID {
			delete(s.Silences, c.Host)
		}
		if c.Event.Type != "" {
			s.appendEvents(c.Event)
		}
	}
}
