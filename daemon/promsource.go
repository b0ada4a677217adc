package daemon

import (
	"context"
	"errors"
	"fmt"
	"time"

	promapi "github.com/prometheus/client_golang/api"
	promv1 "github.com/prometheus/client_golang/api/prometheus/v1"
	"github.com/prometheus/common/model"

	"github.com/herd-project/herd/cluster"
	"github.com/herd-project/herd/policy"
)

// hostCPU asks Prometheus for every host's CPU utilisation (0 to 1) with
// the policy's query. Samples for hosts Herd does not know are ignored; a
// host without a sample, a query error or no data at all is an error, and
// the caller falls back to memory.
func (s *Server) hostCPU(ctx context.Context, src *policy.PrometheusSource, st *cluster.State) (map[string]float64, error) {
	if src == nil || src.URL == "" || src.CPUQuery == "" {
		return nil, errors.New("no prometheus cpu_query in the policy")
	}
	out, err := s.hostQuery(ctx, src, "cpu_query", src.CPUQuery, st)
	if err != nil {
		return nil, err
	}
	for host, v := range out {
		if v < 0 || v > 1.5 || v != v {
			return nil, fmt.Errorf("host %s: cpu utilisation %v is not a share between 0 and 1", host, v)
		}
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("cpu_query returned no data for any known host (label %q)", hostLabel(src))
	}
	return out, nil
}

func hostLabel(src *policy.PrometheusSource) model.LabelName {
	if src.HostLabel == "" {
		return "instance"
	}
	return model.LabelName(src.HostLabel)
}

// hostQuery runs an instant query and returns its value per known host
// (by the source's host label); samples of unknown hosts are ignored.
func (s *Server) hostQuery(ctx context.Context, src *policy.PrometheusSource, name, query string, st *cluster.State) (map[string]float64, error) {
	client, err := promapi.NewClient(promapi.Config{Address: src.URL})
	if err != nil {
		return nil, fmt.Errorf("prometheus %s: %w", src.URL, err)
	}
	timeout := src.Timeout
	if timeout <= 0 {
		timeout = 5 * time.Second
	}
	qctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	val, warnings, _, err := promv1.NewAPI(client).Query(qctx, query, time.Now())
	if err != nil {
		return nil, fmt.Errorf("query prometheus %s: %w", src.URL, err)
	}
	if len(warnings) > 0 {
		s.log.Warn("prometheus query warnings", "query", name, "warnings", warnings)
	}
	vec, ok := val.(model.Vector)
	if !ok {
		return nil, fmt.Errorf("query prometheus: %s returned %s, not an instant vector", name, val.Type())
	}
	label := hostLabel(src)
	out := map[string]float64{}
	for _, smp := range vec {
		host := string(smp.Metric[label])
		if _, known := st.Hosts[host]; known {
			out[host] = float64(smp.Value)
		}
	}
	return out, nil
}
