// Package loadtest generates memcached-protocol load and measures it, for
// capacity planning.
//
// It speaks the memcached text protocol itself over one TCP connection per
// worker goroutine. In closed loop (Config.Rate zero) each connection keeps
// exactly one request outstanding, so the figures say how fast the target
// answers Conns clients that wait for each other's replies. In open loop
// (Config.Rate > 0) requests are due at a constant rate whatever the target
// does, and latency is measured from the moment each request was due, not
// from when it was sent: a stalled target or a connection that fell behind
// shows up in the percentiles instead of slowing the load down (coordinated
// omission). Only the harness's own lateness in sending, timer slack and
// scheduling, is left out: it is reported apart as Result.SendLag, and
// Result.Observed is the latency as it happened, that lateness included.
// Ramp steps the open-loop rate to find the highest rate that holds a p99
// objective; a step that the harness could not send on time is
// harness-limited and does not hold (see RampPlan).
//
// Latencies go into one HDR histogram per connection (1 µs to 60 s, three
// significant digits), merged when the run ends, so the request path takes
// no lock and allocates nothing. A once-a-second progress line reads
// per-connection atomic counters.
//
// Keys are Prefix+"1" .. Prefix+N, chosen uniformly, by a hotspot rule, or by
// a zipfian law of any exponent (NewZipf). Reports are a text table, JSON and
// a self-contained HTML page (WriteTable, WriteJSON, WriteHTML).
package loadtest
