// Package forward is what cmd/listener does with the traffic a relay
// listener receives: it prints every WebSocket message as one JSON line
// (Line), and, given a local service URL, proxies relayed HTTP requests to
// it (relaying the service's response back) and POSTs every WebSocket
// message to it, sending a non-empty 2xx answer back on the same WebSocket
// (ReplyWriter documents replies and error frames) — the reverse-proxy
// pattern users build with hyco-https or azbridge.
//
// It owns no relay connection: relay.Listener calls Handler.ServeConn and
// Handler.ServeHTTP. It may import internal/relay (types only) and must not
// import internal/api, internal/emulator or internal/config.
package forward
