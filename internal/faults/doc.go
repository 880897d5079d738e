// Package faults holds relaygate's fault-injection suite (its tests): the
// real cmd/gateway, cmd/listener and cmd/relay-emulator binaries and a load
// generator (loadgen), built with go build and run as processes of their
// own on 127.0.0.1, with load running while listeners are killed, stopped
// and restarted, the relay is killed and restarted, a TCP proxy resets
// every relay connection, tokens renew, the gateway gets SIGTERM, or
// clients overload it. Each scenario checks the ids clients got 202 for
// against the ids the listeners printed (into files the test follows, so
// that reading them never slows the listener down).
//
// FAULTS=1 go test ./internal/faults runs shortened scenarios, about 90 s
// on 2 cores (.ci/run does); without it every scenario skips, so that
// go test ./... stays fast. FAULTS_FULL=1 runs the full ones (a 20 s
// stall, 10 s of overload, …; a few minutes). With RELIABILITY_REPORT=1 the
// suite rewrites RELIABILITY.md at the repository root from its
// measurements.
package faults
