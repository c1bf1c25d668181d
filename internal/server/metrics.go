package server

import (
	"fmt"
	"io"
	"sort"
	"sync"
	"time"
)

// latencyBuckets are the upper bounds (seconds) of the latency histograms.
var latencyBuckets = []float64{0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10}

type histogram struct {
	counts []uint64 // per bucket, non-cumulative; last = +Inf
	sum    float64
	n      uint64
}

func (h *histogram) observe(v float64) {
	if h.counts == nil {
		h.counts = make([]uint64, len(latencyBuckets)+1)
	}
	i := sort.SearchFloat64s(latencyBuckets, v)
	h.counts[i]++
	h.sum += v
	h.n++
}

// metrics holds the counters served at /metrics in Prometheus text format.
type metrics struct {
	mu       sync.Mutex
	requests map[[3]string]uint64 // method, route, code
	latency  map[string]*histogram
	models   map[string]*histogram
	faces    uint64
}

func newMetrics() *metrics {
	return &metrics{requests: map[[3]string]uint64{}, latency: map[string]*histogram{}, models: map[string]*histogram{}}
}

func (m *metrics) request(method, route string, code int, d time.Duration) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.requests[[3]string{method, route, fmt.Sprint(code)}]++
	h := m.latency[route]
	if h == nil {
		h = &histogram{}
		m.latency[route] = h
	}
	h.observe(d.Seconds())
}

func (m *metrics) model(name string, d time.Duration, faces int) {
	m.mu.Lock()
	defer m.mu.Unlock()
	h := m.models[name]
	if h == nil {
		h = &histogram{}
		m.models[name] = h
	}
	h.observe(d.Seconds())
	if name == "backbone" {
		m.faces += uint64(faces)
	}
}

func writeHistogram(w io.Writer, name, label, value string, h *histogram) {
	var cum uint64
	for i, ub := range latencyBuckets {
		cum += h.counts[i]
		fmt.Fprintf(w, "%s_bucket{%s=%q,le=\"%g\"} %d\n", name, label, value, ub, cum)
	}
	cum += h.counts[len(latencyBuckets)]
	fmt.Fprintf(w, "%s_bucket{%s=%q,le=\"+Inf\"} %d\n", name, label, value, cum)
	fmt.Fprintf(w, "%s_sum{%s=%q} %g\n", name, label, value, h.sum)
	fmt.Fprintf(w, "%s_count{%s=%q} %d\n", name, label, value, h.n)
}

// write prints every metric in the Prometheus text exposition format 0.0.4.
func (m *metrics) write(w io.Writer, decodeBytes int64, busy int) {
	m.mu.Lock()
	defer m.mu.Unlock()
	fmt.Fprintln(w, "# HELP facever_http_requests_total HTTP requests by method, route and status code.")
	fmt.Fprintln(w, "# TYPE facever_http_requests_total counter")
	keys := make([][3]string, 0, len(m.requests))
	for k := range m.requests {
		keys = append(keys, k)
	}
	sort.Slice(keys, func(i, j int) bool { return fmt.Sprint(keys[i]) < fmt.Sprint(keys[j]) })
	for _, k := range keys {
		fmt.Fprintf(w, "facever_http_requests_total{method=%q,route=%q,code=%q} %d\n", k[0], k[1], k[2], m.requests[k])
	}
	fmt.Fprintln(w, "# HELP facever_http_request_duration_seconds HTTP request latency by route.")
	fmt.Fprintln(w, "# TYPE facever_http_request_duration_seconds histogram")
	for _, r := range sortedKeys(m.latency) {
		writeHistogram(w, "facever_http_request_duration_seconds", "route", r, m.latency[r])
	}
	fmt.Fprintln(w, "# HELP facever_model_run_seconds Time of one model run (detect: detector and landmarks of one photo; backbone: one batch).")
	fmt.Fprintln(w, "# TYPE facever_model_run_seconds histogram")
	for _, r := range sortedKeys(m.models) {
		writeHistogram(w, "facever_model_run_seconds", "model", r, m.models[r])
	}
	fmt.Fprintln(w, "# HELP facever_faces_embedded_total Faces run through the backbone.")
	fmt.Fprintln(w, "# TYPE facever_faces_embedded_total counter")
	fmt.Fprintf(w, "facever_faces_embedded_total %d\n", m.faces)
	fmt.Fprintln(w, "# HELP facever_decode_budget_bytes Memory held by decoded images now (of the decode budget).")
	fmt.Fprintln(w, "# TYPE facever_decode_budget_bytes gauge")
	fmt.Fprintf(w, "facever_decode_budget_bytes %d\n", decodeBytes)
	fmt.Fprintln(w, "# HELP facever_requests_working Requests with a body being read or worked on now (of MaxConcurrent).")
	fmt.Fprintln(w, "# TYPE facever_requests_working gauge")
	fmt.Fprintf(w, "facever_requests_working %d\n", busy)
}

func sortedKeys(m map[string]*histogram) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}
