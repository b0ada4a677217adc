package cluster

import (
	"fmt"
	"sort"
	"strings"
	"time"
)

// Rollout commands: a rolling maintenance over many hosts, one host step at
// a time. Every phase change of a host is a compare-and-set (From must be
// the host's phase), so a leader that lost its lead, or a second one acting
// on an old view, can never repeat a host step that another finished.
const (
	CmdCreateRollout   CommandType = 40
	CmdRolloutStep     CommandType = 41
	CmdRolloutControl  CommandType = 42
	CmdRolloutContinue CommandType = 43
)

// RolloutState is where a rollout is.
type RolloutState string

const (
	RolloutRunning   RolloutState = "running"
	RolloutPaused    RolloutState = "paused"
	RolloutSucceeded RolloutState = "succeeded"
	RolloutFailed    RolloutState = "failed"
	RolloutCancelled RolloutState = "cancelled"
)

// Terminal reports whether the rollout has ended.
func (s RolloutState) Terminal() bool {
	return s == RolloutSucceeded || s == RolloutFailed || s == RolloutCancelled
}

// RolloutPhase is where one host of a rollout is.
type RolloutPhase string

const (
	// PhasePending: not started yet.
	PhasePending RolloutPhase = "pending"
	// PhaseEntering: its evacuation (maintenance enable) runs.
	PhaseEntering RolloutPhase = "entering"
	// PhaseWorking: in maintenance; its hook runs, or the rollout waits
	// for `herd rollout continue` or the host's return after a reboot.
	PhaseWorking RolloutPhase = "working"
	// PhaseReturning: the work is done; the rollout waits for the host to
	// be connected and alive.
	PhaseReturning RolloutPhase = "returning"
	// PhaseExiting: its exit from maintenance runs.
	PhaseExiting RolloutPhase = "exiting"
	PhaseDone    RolloutPhase = "done"
	// PhaseFailed: a step failed; the host is left as the step left it
	// (an evacuation that ended in error stays in maintenance).
	PhaseFailed RolloutPhase = "failed"
	// PhaseSkipped: never started (the rollout was cancelled or stopped
	// on a failure first).
	PhaseSkipped RolloutPhase = "skipped"
)

// RolloutPhases lists every phase, in order of a host's life.
var RolloutPhases = []RolloutPhase{PhasePending, PhaseEntering, PhaseWorking, PhaseReturning, PhaseExiting, PhaseDone, PhaseFailed, PhaseSkipped}

// Terminal reports whether the host's step has ended.
func (p RolloutPhase) Terminal() bool { return p == PhaseDone || p == PhaseFailed || p == PhaseSkipped }

// Out reports whether the host is out of service for the rollout (started
// and not yet ended): these count against the rollout's parallelism.
func (p RolloutPhase) Out() bool {
	return p == PhaseEntering || p == PhaseWorking || p == PhaseReturning || p == PhaseExiting
}

// rolloutMoves are the legal phase changes.
var rolloutMoves = map[RolloutPhase][]RolloutPhase{
	PhasePending:   {PhaseEntering, PhaseFailed},
	PhaseEntering:  {PhaseWorking, PhaseFailed},
	PhaseWorking:   {PhaseReturning, PhaseFailed},
	PhaseReturning: {PhaseExiting, PhaseFailed},
	PhaseExiting:   {PhaseDone, PhaseFailed},
}

// On-failure choices.
const (
	OnFailureStop = "stop"
	OnFailureSkip = "skip"
)

// RolloutHost is one host's step in a rollout.
type RolloutHost struct {
	Host string `json:"host"`
	// Wave is the wave of the plan the host was put in (from 1).
	Wave  int          `json:"wave"`
	Phase RolloutPhase `json:"phase"`
	// Evacuation and Exit are the maintenance operations of the host's
	// step, named before they start.
	Evacuation string `json:"evacuation,omitempty"`
	Exit       string `json:"exit,omitempty"`
	// HookRuns counts the starts of the hook for this host (at most one:
	// a hook whose leader was lost is not run again).
	HookRuns int `json:"hook_runs,omitempty"`
	// DownSeen: during a wait, the host was seen down (a reboot); its
	// return ends the wait.
	DownSeen bool `json:"down_seen,omitempty"`
	// Continued: an operator ended the wait (herd rollout continue).
	Continued bool `json:"continued,omitempty"`
	// Note says what the host waits for, when it waits.
	Note       string    `json:"note,omitempty"`
	Error      string    `json:"error,omitempty"`
	Started    time.Time `json:"started,omitempty"`
	PhaseSince time.Time `json:"phase_since,omitempty"`
	Finished   time.Time `json:"finished,omitempty"`
}

// Rollout is a rolling maintenance of many hosts: per host, enter
// maintenance, do the work, wait until the host is back and healthy, exit
// maintenance. It lives in raft: a new leader resumes it where it was.
type Rollout struct {
	ID      string       `json:"id"`
	State   RolloutState `json:"state"`
	Actor   string       `json:"actor"`
	Created time.Time    `json:"created"`
	Updated time.Time    `json:"updated"`
	// Parallel is how many hosts may be out at once.
	Parallel  int    `json:"parallel"`
	Order     string `json:"order"`
	OnFailure string `json:"on_failure"`
	// Migrate is the evacuation's mode (active-only or all).
	Migrate string `json:"migrate"`
	// Hook names the policy's rollout hook run on each host; empty: wait
	// for `continue` or the host's return after a reboot.
	Hook string `json:"hook,omitempty"`
	// MoveBack moves the host's VMs back when it exits maintenance.
	MoveBack bool `json:"move_back,omitempty"`
	// Window names the policy's maintenance window that gates host steps.
	Window string `json:"window,omitempty"`
	// Force: started although its plan had blockers.
	Force bool `json:"force,omitempty"`
	// Stopping: cancelled, or stopped by a failure: no host starts; the
	// rollout ends once the hosts out are back.
	Stopping bool   `json:"stopping,omitempty"`
	Error    string `json:"error,omitempty"`
	// Note says why the rollout waits (a closed window, failover
	// capacity), when it does.
	Note  string        `json:"note,omitempty"`
	Hosts []RolloutHost `json:"hosts"`
}

// HostIndex returns the index of host's step, or -1.
func (r *Rollout) HostIndex(host string) int {
	for i := range r.Hosts {
		if r.Hosts[i].Host == host {
			return i
		}
	}
	return -1
}

// Out counts the hosts out of service now.
func (r *Rollout) Out() int {
	n := 0
	for _, h := range r.Hosts {
		if h.Phase.Out() {
			n++
		}
	}
	return n
}

// PhaseCounts counts the hosts by phase.
func (r *Rollout) PhaseCounts() map[RolloutPhase]int {
	c := map[RolloutPhase]int{}
	for _, h := range r.Hosts {
		c[h.Phase]++
	}
	return c
}

func (r *Rollout) clone() *Rollout {
	c := *r
	c.Hosts = append([]RolloutHost(nil), r.Hosts...)
	return &c
}

// CreateRollout records a new rollout, every host pending.
type CreateRollout struct {
	Rollout Rollout `json:"rollout"`
	Event   Event   `json:"event"`
}

func (*CreateRollout) Type() CommandType { return CmdCreateRollout }

// RolloutStep moves one host of a rollout from phase From to phase To (or,
// with From == To, only updates its flags and note). It is refused unless
// the host is in From, so no step is taken twice.
type RolloutStep struct {
	Rollout string       `json:"rollout"`
	Host    string       `json:"host"`
	From    RolloutPhase `json:"from"`
	To      RolloutPhase `json:"to"`
	// Evacuation and Exit name the maintenance operations (set when the
	// step to entering or exiting is taken).
	Evacuation string `json:"evacuation,omitempty"`
	Exit       string `json:"exit,omitempty"`
	// HookRun: the host's hook starts now (counted in HookRuns).
	HookRun  bool      `json:"hook_run,omitempty"`
	DownSeen bool      `json:"down_seen,omitempty"`
	Note     string    `json:"note,omitempty"`
	Error    string    `json:"error,omitempty"`
	Time     time.Time `json:"time"`
	Event    Event     `json:"event"`
}

func (*RolloutStep) Type() CommandType { return CmdRolloutStep }

// Rollout control actions.
const (
	RolloutPause  = "pause"
	RolloutResume = "resume"
	RolloutCancel = "cancel"
	// RolloutNote only records why the rollout waits (Note).
	RolloutNote = "note"
)

// RolloutControl pauses (no host starts; hosts out finish their step),
// resumes, or cancels a rollout (no host starts; it ends once the hosts
// out are back), or records why it waits.
type RolloutControl struct {
	Rollout string    `json:"rollout"`
	Action  string    `json:"action"`
	Note    string    `json:"note,omitempty"`
	Time    time.Time `json:"time"`
	Event   Event     `json:"event"`
}

func (*RolloutControl) Type() CommandType { return CmdRolloutControl }

// RolloutContinue ends the wait of a host in its work phase (an operator
// did the work by hand).
type RolloutContinue struct {
	Rollout string    `json:"rollout"`
	Host    string    `json:"host"`
	Time    time.Time `json:"time"`
	Event   Event     `json:"event"`
}

func (*RolloutContinue) Type() CommandType { return CmdRolloutContinue }

func rolloutError(code int, field, format string, args ...any) *ApplyError {
	return &ApplyError{Code: code, Field: field, Msg: fmt.Sprintf(format, args...)}
}

// ActiveRolloutOn returns the rollout that holds host and has not ended.
func (s *State) ActiveRolloutOn(host string) *Rollout {
	for _, r := range s.Rollouts {
		if r.State.Terminal() {
			continue
		}
		if i := r.HostIndex(host); i >= 0 && !r.Hosts[i].Phase.Terminal() {
			return r
		}
	}
	return nil
}

// RolloutWorking reports whether host is in the work phase of a rollout
// (or waits to come back after it): a host that goes down then is
// expected to, and is neither fenced nor recovered.
func (s *State) RolloutWorking(host string) bool {
	r := s.ActiveRolloutOn(host)
	if r == nil {
		return false
	}
	p := r.Hosts[r.HostIndex(host)].Phase
	return p == PhaseWorking || p == PhaseReturning
}

// RolloutWorkingHosts returns the hosts in the work phase of a rollout (or
// waiting to come back after it), as RolloutWorking, in one pass.
func (s *State) RolloutWorkingHosts() map[string]bool {
	var out map[string]bool
	for _, r := range s.Rollouts {
		if r.State.Terminal() {
			continue
		}
		for _, h := range r.Hosts {
			if h.Phase == PhaseWorking || h.Phase == PhaseReturning {
				if out == nil {
					out = map[string]bool{}
				}
				out[h.Host] = true
			}
		}
	}
	return out
}

// SortedRollouts lists rollouts, newest first.
func (s *State) SortedRollouts() []*Rollout {
	out := make([]*Rollout, 0, len(s.Rollouts))
	for _, r := range s.Rollouts {
		out = append(out, r)
	}
	sort.Slice(out, func(i, j int) bool {
		if !out[i].Created.Equal(out[j].Created) {
			return out[i].Created.After(out[j].Created)
		}
		return out[i].ID > out[j].ID
	})
	return out
}

func (s *State) applyRollout(cmd Command) *ApplyError {
	switch c := cmd.(type) {
	case *CreateRollout:
		return s.createRollout(c)
	case *RolloutStep:
		return s.rolloutStep(c)
	case *RolloutControl:
		return s.rolloutControl(c)
	case *RolloutContinue:
		r, i, err := s.rolloutHost(c.Rollout, c.Host)
		if err != nil {
			return err
		}
		h := &r.Hosts[i]
		if h.Phase != PhaseWorking {
			return rolloutError(409, "host", "rollout %s: host %s is %s, not waiting in its work phase", r.ID, h.Host, h.Phase)
		}
		if h.Continued {
			return nil
		}
		h.Continued = true
		r.Updated = c.Time
		s.Rollouts[r.ID] = r
		s.appendEvents(c.Event)
	}
	return nil
}

func (s *State) createRollout(c *CreateRollout) *ApplyError {
	r := c.Rollout.clone()
	switch {
	case r.ID == "" || s.Rollouts[r.ID] != nil:
		return rolloutError(409, "id", "rollout id %q is empty or taken", r.ID)
	case len(r.Hosts) == 0:
		return rolloutError(400, "hosts", "a rollout needs at least one host")
	case r.Parallel < 1:
		return rolloutError(400, "parallel", "parallel must be at least 1, got %d", r.Parallel)
	case r.OnFailure != OnFailureStop && r.OnFailure != OnFailureSkip:
		return rolloutError(400, "on_failure", "on_failure %q is not one of stop, skip", r.OnFailure)
	}
	seen := map[string]bool{}
	for i := range r.Hosts {
		h := &r.Hosts[i]
		if s.Hosts[h.Host] == nil {
			return rolloutError(404, "hosts", "host %q not found", h.Host)
		}
		if seen[h.Host] {
			return rolloutError(400, "hosts", "host %s is listed twice", h.Host)
		}
		seen[h.Host] = true
		if other := s.ActiveRolloutOn(h.Host); other != nil {
			return rolloutError(409, "hosts", "host %s is in rollout %s, which has not ended", h.Host, other.ID)
		}
		*h = RolloutHost{Host: h.Host, Wave: h.Wave, Phase: PhasePending}
	}
	r.State, r.Stopping, r.Error, r.Note = RolloutRunning, false, "", ""
	r.Updated = r.Created
	s.Rollouts[r.ID] = r
	s.appendEvents(c.Event)
	s.trimRollouts()
	return nil
}

// rolloutHost returns a copy of the running rollout id and the index of host.
func (s *State) rolloutHost(id, host string) (*Rollout, int, *ApplyError) {
	old := s.Rollouts[id]
	if old == nil {
		return nil, -1, rolloutError(404, "rollout", "rollout %q not found", id)
	}
	if old.State.Terminal() {
		return nil, -1, rolloutError(409, "rollout", "rollout %s has %s", id, old.State)
	}
	i := old.HostIndex(host)
	if i < 0 {
		return nil, -1, rolloutError(404, "host", "host %q is not in rollout %s", host, id)
	}
	return old.clone(), i, nil
}

func (s *State) rolloutStep(c *RolloutStep) *ApplyError {
	r, i, err := s.rolloutHost(c.Rollout, c.Host)
	if err != nil {
		return err
	}
	h := &r.Hosts[i]
	if h.Phase != c.From {
		return rolloutError(409, "phase", "rollout %s: host %s is %s, not %s", r.ID, h.Host, h.Phase, c.From)
	}
	if c.To != c.From {
		legal := false
		for _, t := range rolloutMoves[c.From] {
			legal = legal || t == c.To
		}
		if !legal {
			return rolloutError(409, "phase", "rollout %s: host %s cannot go from %s to %s", r.ID, h.Host, c.From, c.To)
		}
		if c.To == PhaseEntering {
			switch {
			case r.State != RolloutRunning || r.Stopping:
				return rolloutError(409, "rollout", "rollout %s is %s: no host starts", r.ID, r.stateWord())
			case r.Out() >= r.Parallel:
				return rolloutError(409, "parallel", "rollout %s already has %d hosts out (parallel %d)", r.ID, r.Out(), r.Parallel)
			}
			h.Started = c.Time
		}
		h.Phase, h.PhaseSince, h.Note = c.To, c.Time, ""
		if c.To.Terminal() {
			h.Finished = c.Time
		}
	}
	if c.Evacuation != "" {
		h.Evacuation = c.Evacuation
	}
	if c.Exit != "" {
		h.Exit = c.Exit
	}
	if c.HookRun {
		h.HookRuns++
	}
	h.DownSeen = h.DownSeen || c.DownSeen
	if c.Note != "" || c.To != c.From {
		h.Note = c.Note
	}
	if c.Error != "" {
		h.Error = c.Error
	}
	if c.To == PhaseFailed && c.From != PhaseFailed && r.OnFailure == OnFailureStop && !r.Stopping {
		r.Stopping = true
		r.Error = fmt.Sprintf("host %s failed: %s; the rollout stops (on_failure stop)", h.Host, h.Error)
	}
	r.Updated = c.Time
	s.Rollouts[r.ID] = r
	s.appendEvents(c.Event)
	s.settleRollout(r, c.Time)
	return nil
}

func (r *Rollout) stateWord() string {
	if !r.State.Terminal() && r.Stopping {
		return "stopping"
	}
	return string(r.State)
}

func (s *State) rolloutControl(c *RolloutControl) *ApplyError {
	old := s.Rollouts[c.Rollout]
	if old == nil {
		return rolloutError(404, "rollout", "rollout %q not found", c.Rollout)
	}
	if old.State.Terminal() {
		return rolloutError(409, "rollout", "rollout %s has %s", old.ID, old.State)
	}
	r := old.clone()
	switch c.Action {
	case RolloutPause:
		if r.State == RolloutPaused {
			return nil
		}
		r.State = RolloutPaused
	case RolloutResume:
		if r.Stopping {
			return rolloutError(409, "rollout", "rollout %s is stopping: it cannot be resumed", r.ID)
		}
		if r.State == RolloutRunning {
			return nil
		}
		r.State = RolloutRunning
	case RolloutCancel:
		if r.Stopping {
			return nil // stopping already: nothing more to stop
		}
		r.Stopping, r.Error = true, "cancelled"
	case RolloutNote:
		if r.Note == c.Note {
			return nil
		}
		r.Note = c.Note
	default:
		return rolloutError(400, "action", "action %q is not one of pause, resume, cancel", c.Action)
	}
	r.Updated = c.Time
	s.Rollouts[r.ID] = r
	if c.Event.Type != "" {
		s.appendEvents(c.Event)
	}
	if c.Action == RolloutCancel {
		r.Note = ""
		s.settleRollout(r, c.Time)
	}
	return nil
}

// settleRollout ends r once nothing remains to do: every host ended, or
// the rollout stops and no host is out.
func (s *State) settleRollout(r *Rollout, t time.Time) {
	out, pending := 0, 0
	var failed []string
	for _, h := range r.Hosts {
		switch {
		case h.Phase.Out():
			out++
		case h.Phase == PhasePending:
			pending++
		case h.Phase == PhaseFailed:
			failed = append(failed, h.Host)
		}
	}
	if out > 0 || (pending > 0 && !r.Stopping) {
		return
	}
	for i := range r.Hosts {
		if r.Hosts[i].Phase == PhasePending {
			r.Hosts[i].Phase, r.Hosts[i].Finished = PhaseSkipped, t
		}
	}
	cancelled := r.Stopping && r.Error == "cancelled"
	switch {
	case cancelled:
		r.State = RolloutCancelled
	case len(failed) > 0:
		r.State = RolloutFailed
		if r.Error == "" {
			r.Error = fmt.Sprintf("hosts failed: %s", strings.Join(failed, ", "))
		}
	default:
		r.State = RolloutSucceeded
	}
	r.Note, r.Updated = "", t
	counts := r.PhaseCounts()
	msg := fmt.Sprintf("rollout %s %s: %d hosts done, %d failed, %d skipped", r.ID, r.State, counts[PhaseDone], counts[PhaseFailed], counts[PhaseSkipped])
	if len(failed) > 0 {
		msg += " (failed: " + strings.Join(failed, ", ") + ")"
	}
	s.appendEvents(Event{Time: t, Type: "rollout." + string(r.State), Actor: "herd", Operation: r.ID, Message: msg})
}

// rolloutRetention is how many ended rollouts the state keeps.
const rolloutRetention = 100

func (s *State) trimRollouts() {
	var ended []*Rollout
	for _, r := range s.Rollouts {
		if r.State.Terminal() {
			ended = append(ended, r)
		}
	}
	if len(ended) <= rolloutRetention {
		return
	}
	sort.Slice(ended, func(i, j int) bool {
		if !ended[i].Updated.Equal(ended[j].Updated) {
			return ended[i].Updated.Before(ended[j].Updated)
		}
		return ended[i].ID < ended[j].ID
	})
	for _, r := range ended[:len(ended)-rolloutRetention] {
		delete(s.Rollouts, r.ID)
	}
}
