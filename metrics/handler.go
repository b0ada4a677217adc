package metrics

import (
	"bytes"
	"net/http"
	"strconv"
	"strings"
	"sync"

	"github.com/klauspost/compress/gzip"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/common/expfmt"
)

// hostFamily is one of the families with a series per host: its name, help,
// the label after host (none when label is ""), and what a host's sample
// gives as that label's value and the series' value.
type hostFamily struct {
	name, help, label string
	value             func(h *HostSample) (string, float64)
}

// hostFamilies are written straight to text by the /metrics handler: at
// 2,000 hosts they are 24,000 series, which the client library's
// collect-then-encode took 60–80 ms to write on every scrape; written as
// text they take a few milliseconds. Labels are host and one bounded state,
// never a VM.
var hostFamilies = []hostFamily{
	{"herd_host_admin_status", "The host's admin status (one series per host, value 1).", "status",
		func(h *HostSample) (string, float64) { return h.Admin, 1 }},
	{"herd_host_maintenance_state", "The host's maintenance state (one series per host, value 1).", "state",
		func(h *HostSample) (string, float64) { return h.Maintenance, 1 }},
	{"herd_host_health", "The host's fused health (one series per host, value 1).", "state",
		func(h *HostSample) (string, float64) { return h.Health, 1 }},
	{"herd_host_connected", "1 when the host's hypervisor manager reports it connected.", "driver",
		func(h *HostSample) (string, float64) { return h.Driver, b2f(h.Connected) }},
	{"herd_host_memory_bytes", "Host physical memory.", "",
		func(h *HostSample) (string, float64) { return "", float64(h.MemoryBytes) }},
	{"herd_host_memory_used_bytes", "Memory configured for the host's running VMs.", "",
		func(h *HostSample) (string, float64) { return "", float64(h.MemoryUsedBytes) }},
	{"herd_host_cpus", "Host logical CPUs.", "",
		func(h *HostSample) (string, float64) { return "", float64(h.CPUs) }},
	{"herd_host_vcpus_used", "vCPUs of the host's running VMs.", "",
		func(h *HostSample) (string, float64) { return "", float64(h.VCPUsUsed) }},
	{"herd_host_vms", "VMs registered on the host.", "",
		func(h *HostSample) (string, float64) { return "", float64(h.VMs) }},
	{"herd_host_running_vms", "Running VMs on the host.", "",
		func(h *HostSample) (string, float64) { return "", float64(h.RunningVMs) }},
	{"herd_host_stale_copies", "Stale copies on the host: what a fenced host still holds of VMs recreated elsewhere, destroyed when it returns (not counted in herd_host_vms).", "",
		func(h *HostSample) (string, float64) { return "", float64(h.StaleCopies) }},
	{"herd_host_fencing_failed", "1 when the host is dead and no fencing method confirmed it is off: nothing is recreated.", "",
		func(h *HostSample) (string, float64) { return "", b2f(h.FencingFailed) }},
}

// hostDescs describe the host families to the registry, so that their
// names are known before any host exists.
var hostDescs = func() []*prometheus.Desc {
	out := make([]*prometheus.Desc, len(hostFamilies))
	for i, f := range hostFamilies {
		labels := []string{"host"}
		if f.label != "" {
			labels = append(labels, f.label)
		}
		out[i] = prometheus.NewDesc(f.name, f.help, labels, nil)
	}
	return out
}()

var (
	helpEscaper  = strings.NewReplacer(`\`, `\\`, "\n", `\n`)
	labelEscaper = strings.NewReplacer(`\`, `\\`, "\n", `\n`, `"`, `\"`)
)

// appendHostFamilies writes the host families of hosts in the text
// exposition format (version 0.0.4), as expfmt writes them: the hosts in
// the order given (by name), no family when there is no host.
func appendHostFamilies(b *bytes.Buffer, hosts []HostSample) {
	if len(hosts) == 0 {
		return
	}
	var num []byte
	for _, f := range hostFamilies {
		b.WriteString("# HELP ")
		b.WriteString(f.name)
		b.WriteByte(' ')
		helpEscaper.WriteString(b, f.help)
		b.WriteString("\n# TYPE ")
		b.WriteString(f.name)
		b.WriteString(" gauge\n")
		for i := range hosts {
			lv, v := f.value(&hosts[i])
			b.WriteString(f.name)
			b.WriteByte('{')
			// Label pairs sorted by name, as the library writes them.
			if f.label != "" && f.label < "host" {
				appendLabel(b, f.label, lv)
				b.WriteByte(',')
			}
			appendLabel(b, "host", hosts[i].Name)
			if f.label != "" && f.label > "host" {
				b.WriteByte(',')
				appendLabel(b, f.label, lv)
			}
			b.WriteString("} ")
			num = strconv.AppendFloat(num[:0], v, 'g', -1, 64)
			b.Write(num)
			b.WriteByte('\n')
		}
	}
}

func appendLabel(b *bytes.Buffer, name, value string) {
	b.WriteString(name)
	b.WriteString(`="`)
	labelEscaper.WriteString(b, strings.ToValidUTF8(value, "\uFFFD"))
	b.WriteByte('"')
}

var bufPool = sync.Pool{New: func() any { return new(bytes.Buffer) }}

// Handler serves /metrics in the text format: what g gathers (the
// registry New registered on, with the collectors of the cluster-wide
// state families for this scrape's sample) followed by the host families
// of the same sample, written directly. One state sample per scrape, so
// every state family of a scrape describes the same applied index.
func (m *Metrics) Handler(g prometheus.Gatherer) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var sample *StateSample
		gs := prometheus.Gatherers{g}
		if m.src.State != nil {
			s := m.src.State()
			sample = &s
			reg := prometheus.NewRegistry()
			reg.MustRegister(&sampleCollector{s: sample})
			gs = append(gs, reg)
		}
		families, err := gs.Gather()
		if err != nil {
			m.handlerErrors.WithLabelValues("gathering").Inc()
			http.Error(w, "An error has occurred while gathering metrics:\n\n"+err.Error(), http.StatusInternalServerError)
			return
		}
		buf := bufPool.Get().(*bytes.Buffer)
		buf.Reset()
		defer bufPool.Put(buf)
		for _, mf := range families {
			if _, err := expfmt.MetricFamilyToText(buf, mf); err != nil {
				m.handlerErrors.WithLabelValues("encoding").Inc()
				http.Error(w, "An error has occurred while encoding metrics:\n\n"+err.Error(), http.StatusInternalServerError)
				return
			}
		}
		if sample != nil {
			appendHostFamilies(buf, sample.Hosts)
		}
		h := w.Header()
		h.Set("Content-Type", string(expfmt.NewFormat(expfmt.TypeTextPlain)))
		h.Add("Vary", "Accept-Encoding")
		if !acceptsGzip(r) {
			h.Set("Content-Length", strconv.Itoa(buf.Len()))
			w.Write(buf.Bytes())
			return
		}
		h.Set("Content-Encoding", "gzip")
		zw := gzipPool.Get().(*gzip.Writer)
		defer gzipPool.Put(zw)
		zw.Reset(w)
		zw.Write(buf.Bytes())
		zw.Close()
	})
}

// gzipPool holds writers at the fastest level: a scrape of 2,000 hosts is
// over a megabyte of text, which the default level took longer to
// compress than to write.
var gzipPool = sync.Pool{New: func() any {
	zw, _ := gzip.NewWriterLevel(nil, gzip.BestSpeed)
	return zw
}}

// acceptsGzip reports whether the request's Accept-Encoding lists gzip
// with a weight above zero.
func acceptsGzip(r *http.Request) bool {
	for _, h := range r.Header.Values("Accept-Encoding") {
		for _, part := range strings.Split(h, ",") {
			coding, params, _ := strings.Cut(strings.TrimSpace(part), ";")
			if !strings.EqualFold(strings.TrimSpace(coding), "gzip") {
				continue
			}
			if v, ok := strings.CutPrefix(strings.TrimSpace(params), "q="); ok {
				if q, err := strconv.ParseFloat(v, 64); err == nil && q == 0 {
					return false
				}
			}
			return true
		}
	}
	return false
}
