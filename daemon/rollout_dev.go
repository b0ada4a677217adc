package daemon

import (
	"fmt"
	"net/http"
	"time"

	"github.com/herd-project/herd/cluster"
)

// defaultRebootDown is how long a dev reboot keeps its host down.
const defaultRebootDown = 5 * time.Second

// handleDevReboot makes a simulator host go down and answer again after
// ?down= (herd host reboot, dev mode only): what a patch reboot looks like
// to Herd.
func (s *Server) handleDevReboot(w http.ResponseWriter, r *http.Request) {
	name := r.PathValue("host")
	var empty struct{}
	if r.ContentLength != 0 && !decodeBody(w, r, &empty) {
		return
	}
	if s.devCrash == nil {
		writeError(w, http.StatusConflict, "", "dev mode only: reboot acts on herd server -dev's simulated hosts; this server drives real ones")
		return
	}
	down := defaultRebootDown
	if v := r.URL.Query().Get("down"); v != "" {
		d, err := time.ParseDuration(v)
		if err != nil || d < 100*time.Millisecond || d > 10*time.Minute {
			writeError(w, http.StatusBadRequest, "down", "down %q: want a duration from 100ms to 10m, such as 5s", v)
			return
		}
		down = d
	}
	var h *cluster.Host
	s.node.FSM().Read(func(st *cluster.State) { h = st.Hosts[name] })
	if h == nil {
		writeError(w, http.StatusNotFound, "host", "host %q not found", name)
		return
	}
	if err := s.devCrash(name, true); err != nil {
		writeError(w, http.StatusInternalServerError, "", "%v", err)
		return
	}
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		select {
		case <-time.After(down):
		case <-s.ctx.Done():
		}
		if err := s.devCrash(name, false); err != nil {
			s.log.Warn("dev reboot: host does not come back", "host", name, "err", err)
		}
	}()
	msg := fmt.Sprintf("dev: simulator host %s reboots: down now, back in %s", name, down)
	if _, err := s.node.Apply(r.Context(), &cluster.AppendEvents{Events: []cluster.Event{cluster.NewEvent("dev.host", actor(r), name, "", msg)}}); err != nil {
		writeApplyError(w, err)
		return
	}
	w.WriteHeader(http.StatusNoContent)
}
