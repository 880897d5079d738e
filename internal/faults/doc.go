// Package faults holds relaygate's fault-injection suite (its tests): the
// real cmd/gateway and cmd/listener binaries, built with go build, and an
// in-process relay emulator, all on 127.0.0.1, with load running while
// listeners are killed, stopped and restarted, the relay restarts, a TCP
// proxy resets every relay connection, tokens renew, the gateway gets
// SIGTERM, or clients overload it. Each scenario checks the ids clients
// got 202 for against the ids the listeners printed.
//
// FAULTS=1 go test ./internal/faults runs shortened scenarios, about 90 s
// on 2 cores (.ci/run does); without it every scenario skips, so that
// go test ./... stays fast. FAULTS_FULL=1 runs the full ones (a 20 s stall, 512 overload clients, …; a few minutes). With
// RELIABILITY_REPORT=1 the suite rewrites RELIABILITY.md at the
// repository root from its measurements.
package faults
