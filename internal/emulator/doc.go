// Package emulator is a Hybrid Connections-compatible server for
// development and tests; it is not the Azure Relay service.
//
// It speaks the wire protocol of docs/hybrid-connections.md (§2–§12) closely
// enough that unmodified clients work against it: listeners open control
// channels (sb-hc-action=listen), senders connect (sb-hc-action=connect) and
// are joined to a listener's accept rendezvous, and plain HTTP requests are
// forwarded to listeners in HTTP request mode. Errors are the service's
// wire errors: status lines whose reason phrase carries the message and a
// TrackingId, not problem details.
//
// The package owns every socket it accepts: control channels, rendezvous
// legs and hijacked HTTP connections. Server.Close closes all of them.
//
// It must import nothing from this module except internal/relay, and from
// there only the token verifier, addressing constants and wire types. It must
// not import Prometheus (cmd/relay-emulator adapts Metrics) or read the
// environment (internal/config does).
//
// Lock order: Server.mu may be taken while holding nothing; entity state is
// guarded by Server.mu; controlChannel.mu is a leaf and is never held while
// taking Server.mu. No mutex is held across network I/O; control-channel
// writes are serialized by a one-slot semaphore acquired with a context.
package emulator
