// Package bench measures relaygate against its ceilings and the seed's
// approach, side by side, in one run on one machine (issue 6): end to end
// through the gateway, the emulator and a counting listener; the HTTP
// ceiling; a new WebSocket per message; one WebSocket with and without the
// relay; pool sizes; the RSS of a gateway process; and go test
// micro-benchmarks. Run returns a Report, which WriteMarkdown turns into
// BENCHMARKS.md.
//
// Everything it starts listens on 127.0.0.1 and stops by itself: every
// load phase is bounded by the Options' durations. The load generator is
// closed-loop (a fixed number of workers) except for one open-loop run at
// a fixed rate, whose latencies are measured from each request's scheduled
// start. Timing figures are reported, never asserted; the only failures
// are correctness failures (a receiver that did not get exactly what was
// accepted, a scenario that could not run).
//
// bench builds on the real parts: the gateway assembled by
// internal/gateway (as cmd/gateway assembles it), internal/relay and
// internal/emulator, and the cmd/gateway binary itself for memory. Nothing imports bench
// except cmd/relaybench.
package bench
