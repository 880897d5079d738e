// Package relay is the Azure Relay Hybrid Connections protocol core: SAS
// tokens, credentials, addressing, the control-channel wire format, the
// WebSocket sender, the listener, the HTTP request-mode sender and the
// gateway's pooled sender.
//
// It owns every long-lived connection the project opens towards a relay.
// It must not import internal/api, internal/emulator, chi or Prometheus: the
// emulator borrows only the token verifier and the wire types from here, and
// metrics reach this package through its own small Metrics interface.
//
// WebSockets use coder/websocket, except the listener's end of an accepted
// connection (ListenerConn), which uses gorilla/websocket: the data phase
// must support half-close, and coder/websocket answers a close frame by
// closing the connection.
//
// Unless a type's documentation says otherwise, values are immutable after
// construction and safe for concurrent use.
package relay
