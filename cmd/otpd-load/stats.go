package main

import (
	"encoding/json"
	"fmt"
	"math"
	"slices"
	"sort"
	"strings"
	"time"
)

// Op is one kind of HTTP request the load generator sends.
type Op int

// The request kinds, one per route (plus the hello-world request).
const (
	OpHello Op = iota
	OpPreRegister
	OpOutbox
	OpRegister
	OpCustomer
	OpGenerate
	OpVerify
	OpEmailpassRegister
	OpEmailpass
	OpSTCode    // SuperTokens createCode, POST {st-base}/signinup/code
	OpSTConsume // SuperTokens consumeCode, POST {st-base}/signinup/code/consume
	OpSTRefresh // SuperTokens session refresh, POST {st-base}/session/refresh
	OpV1Create  // server API, POST /v1/verifications (delivery return)
	OpV1Check   // server API, POST /v1/verifications/check
	numOps
)

var opNames = [numOps]string{"hello", "pre-register", "outbox", "register", "customer", "generate", "verify", "emailpass-register", "emailpass",
	"st-code", "st-consume", "st-refresh", "v1-create", "v1-check"}

// String returns the request kind's name as printed in reports.
func (o Op) String() string {
	if o < 0 || o >= numOps {
		return fmt.Sprintf("op(%d)", int(o))
	}
	return opNames[o]
}

// Percentile returns the nearest-rank p-th percentile (0 < p ≤ 100) of an
// ascending sorted sample: the smallest value such that at least p% of the
// samples are ≤ it. It returns 0 for an empty sample.
func Percentile(sorted []time.Duration, p float64) time.Duration {
	n := len(sorted)
	if n == 0 {
		return 0
	}
	rank := int(math.Ceil(p / 100 * float64(n)))
	rank = max(1, min(rank, n))
	return sorted[rank-1]
}

// Latency summarises a sample of request or flow latencies.
type Latency struct {
	Count int
	P50   time.Duration
	P99   time.Duration
	Max   time.Duration
}

// MarshalJSON writes the latencies in microseconds.
func (l Latency) MarshalJSON() ([]byte, error) {
	us := func(d time.Duration) float64 { return math.Round(float64(d)/float64(time.Microsecond)*10) / 10 }
	return json.Marshal(struct {
		Count int     `json:"count"`
		P50   float64 `json:"p50_us"`
		P99   float64 `json:"p99_us"`
		Max   float64 `json:"max_us"`
	}{l.Count, us(l.P50), us(l.P99), us(l.Max)})
}

// Summarize sorts samples in place and returns their count, p50, p99 and max.
func Summarize(samples []time.Duration) Latency {
	slices.Sort(samples)
	l := Latency{Count: len(samples), P50: Percentile(samples, 50), P99: Percentile(samples, 99)}
	if len(samples) > 0 {
		l.Max = samples[len(samples)-1]
	}
	return l
}

// flowError is why a flow failed: the request that failed and how.
type flowError struct {
	Op         Op
	Kind       string // HTTP status ("429", "401"), SuperTokens status (GENERAL_ERROR, RESTART_FLOW_ERROR, ...), or timeout, net, read, decode, no_code, no_token, no_account, canceled
	Throttled  bool   // rate limited: a 429, or a SuperTokens GENERAL_ERROR with Retry-After
	RetryAfter time.Duration
}

func (e *flowError) Error() string { return e.Op.String() + " " + e.Kind }

// recorder collects one client's measurements. Only events that end inside
// [start, end] are kept, so warm-up and the drain after the window are not
// measured. A recorder is used by one goroutine at a time.
type recorder struct {
	start, end    time.Time
	lat           [numOps][]time.Duration
	flowLat       []time.Duration
	completed     int
	failed        int
	errs          map[string]int
	throttled     int
	retryAfterMax time.Duration
}

func newRecorder(start, end time.Time) *recorder {
	return &recorder{start: start, end: end, errs: map[string]int{}}
}

func (r *recorder) in(t time.Time) bool { return !t.Before(r.start) && !t.After(r.end) }

// request records a successful (2xx) request that ran from begin to end.
func (r *recorder) request(op Op, begin, end time.Time) {
	if r.in(end) {
		r.lat[op] = append(r.lat[op], end.Sub(begin))
	}
}

func (r *recorder) flowDone(begin, end time.Time) {
	if r.in(end) {
		r.completed++
		r.flowLat = append(r.flowLat, end.Sub(begin))
	}
}

func (r *recorder) flowFailed(err error, at time.Time) {
	if !r.in(at) {
		return
	}
	fe, ok := err.(*flowError)
	if !ok {
		fe = &flowError{Kind: err.Error()}
	}
	if fe.Kind == "canceled" {
		return // interrupted by the operator, not a server error
	}
	r.failed++
	r.errs[fe.Error()]++
	if fe.Throttled || fe.Kind == "429" {
		r.throttled++
		r.retryAfterMax = max(r.retryAfterMax, fe.RetryAfter)
	}
}

// PoolStats describes a sign-in account pool (Medusa or SuperTokens) after a level.
type PoolStats struct {
	Size    int     `json:"size"`
	MaxUses int     `json:"max_uses"` // sign-ins of the most used account so far
	MinGap  float64 `json:"min_gap_s"`
}

// Result is the measurement of one flow at one client count.
type Result struct {
	Flow          string             `json:"flow"`
	Clients       int                `json:"clients"`
	Seconds       float64            `json:"seconds"`
	Completed     int                `json:"completed"`
	Failed        int                `json:"failed"`
	PerSecond     float64            `json:"per_second"`
	Errors        map[string]int     `json:"errors,omitempty"`
	Throttled     int                `json:"throttled_429"` // 429s, and SuperTokens GENERAL_ERRORs with Retry-After
	RetryAfterMax float64            `json:"retry_after_max_s,omitempty"`
	Requests      map[string]Latency `json:"requests"`
	FlowLatency   Latency            `json:"flow_latency"`
	Pool          *PoolStats         `json:"pool,omitempty"`
}

// ErrorSummary lists the error counts as "kind=n" sorted by kind, or "none".
func (r *Result) ErrorSummary() string {
	if len(r.Errors) == 0 {
		return "none"
	}
	keys := make([]string, 0, len(r.Errors))
	for k := range r.Errors {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	parts := make([]string, len(keys))
	for i, k := range keys {
		parts[i] = fmt.Sprintf("%s=%d", k, r.Errors[k])
	}
	return strings.Join(parts, ", ")
}

// merge combines the clients' recorders into one Result. ops lists the
// request kinds of the flow, in the order they are reported.
func merge(flow string, ops []Op, recs []*recorder, seconds float64) *Result {
	res := &Result{Flow: flow, Clients: len(recs), Seconds: seconds, Errors: map[string]int{}, Requests: map[string]Latency{}}
	var flowLat []time.Duration
	var lat [numOps][]time.Duration
	for _, r := range recs {
		res.Completed += r.completed
		res.Failed += r.failed
		res.Throttled += r.throttled
		res.RetryAfterMax = max(res.RetryAfterMax, r.retryAfterMax.Seconds())
		for k, n := range r.errs {
			res.Errors[k] += n
		}
		flowLat = append(flowLat, r.flowLat...)
		for op := range lat {
			lat[op] = append(lat[op], r.lat[op]...)
		}
	}
	for _, op := range ops {
		res.Requests[op.String()] = Summarize(lat[op])
	}
	res.FlowLatency = Summarize(flowLat)
	if seconds > 0 {
		res.PerSecond = float64(res.Completed) / seconds
	}
	if len(res.Errors) == 0 {
		res.Errors = nil
	}
	return res
}
