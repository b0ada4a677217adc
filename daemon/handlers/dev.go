package handlers

import (
	"fmt"
	"net/http"
	"time"

	"github.com/herd-project/herd/cluster"
	"github.com/herd-project/herd/daemon/httpapi"
)

// defaultRebootDown is how long a dev reboot keeps its host down.
const defaultRebootDown = 5 * time.Second

// DevReboot makes a simulator host go down and answer again after
// ?down= (herd host reboot, dev mode only): what a patch reboot looks like
// to Herd.
func (a *API) DevReboot(w http.ResponseWriter, r *http.Request) (any, error) {
	name := r.PathValue("host")
	if err := httpapi.DecodeEmpty(r); err != nil {
		return nil, err
	}
	if !a.Dev.Enabled() {
		return nil, httpapi.Errorf(http.StatusConflict, "", "dev mode only: reboot acts on herd server -dev's simulated hosts; this server drives real ones")
	}
	down := defaultRebootDown
	if v := r.URL.Query().Get("down"); v != "" {
		d, err := time.ParseDuration(v)
		if err != nil || d < 100*time.Millisecond || d > 10*time.Minute {
			return nil, httpapi.Errorf(http.StatusBadRequest, "down", "down %q: want a duration from 100ms to 10m, such as 5s", v)
		}
		down = d
	}
	var h *cluster.Host
	a.State.Read(func(st *cluster.State) { h = st.Hosts[name] })
	if h == nil {
		return nil, httpapi.Errorf(http.StatusNotFound, "host", "host %q not found", name)
	}
	if err := a.Dev.Reboot(name, down); err != nil {
		return nil, httpapi.Errorf(http.StatusInternalServerError, "", "%v", err)
	}
	msg := fmt.Sprintf("dev: simulator host %s reboots: down now, back in %s", name, down)
	if _, err := a.Raft.Apply(r.Context(), &cluster.AppendEvents{Events: []cluster.Event{cluster.NewEvent("dev.host", httpapi.Actor(r), name, "", msg)}}); err != nil {
		return nil, httpapi.ApplyFailed(err)
	}
	return httpapi.NoContent, nil
}

// DevHost makes a simulator host stop answering or answer again
// (herd host crash|restore, dev mode only).
func (a *API) DevHost(crash bool) httpapi.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) (any, error) {
		name := r.PathValue("host")
		if !a.Dev.Enabled() {
			return nil, httpapi.Errorf(http.StatusConflict, "", "dev mode only: crash and restore act on herd server -dev's simulated hosts; this server drives real ones")
		}
		var h *cluster.Host
		a.State.Read(func(st *cluster.State) { h = st.Hosts[name] })
		if h == nil {
			return nil, httpapi.Errorf(http.StatusNotFound, "host", "host %q not found", name)
		}
		if err := a.Dev.Crash(name, crash); err != nil {
			return nil, httpapi.Errorf(http.StatusInternalServerError, "", "%v", err)
		}
		what := "restored: it answers again"
		if crash {
			what = "crashed: it stops answering"
		}
		msg := fmt.Sprintf("dev: simulator host %s %s", name, what)
		if _, err := a.Raft.Apply(r.Context(), &cluster.AppendEvents{Events: []cluster.Event{cluster.NewEvent("dev.host", httpapi.Actor(r), name, "", msg)}}); err != nil {
			return nil, httpapi.ApplyFailed(err)
		}
		return httpapi.NoContent, nil
	}
}
