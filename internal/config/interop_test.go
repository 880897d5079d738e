package config

import (
	"io"
	"strings"
	"testing"
)

// TestInteropVariables: GATEWAY_MODE, GATEWAY_TOKEN_PLACEMENT,
// LISTENER_TOKEN_PLACEMENT and RELAY_EMULATOR_TOKEN_PLACEMENT load with
// their defaults, accept their values and name themselves when wrong.
func TestInteropVariables(t *testing.T) {
	setEnv(t, GatewayPrefix, nil)
	g, err := LoadGateway(nil, io.Discard)
	if err != nil || g.Mode != GatewayModePool || g.TokenPlacement != "header" {
		t.Fatalf("gateway defaults: mode %q, placement %q, %v", g.Mode, g.TokenPlacement, err)
	}
	setEnv(t, GatewayPrefix, map[string]string{"GATEWAY_MODE": "request", "GATEWAY_TOKEN_PLACEMENT": "auto"})
	if g, err = LoadGateway(nil, io.Discard); err != nil || g.Mode != GatewayModeRequest || g.TokenPlacement != "auto" {
		t.Fatalf("gateway: mode %q, placement %q, %v", g.Mode, g.TokenPlacement, err)
	}
	setEnv(t, GatewayPrefix, map[string]string{"GATEWAY_MODE": "websocket", "GATEWAY_TOKEN_PLACEMENT": "cookie"})
	_, err = LoadGateway(nil, io.Discard)
	if err == nil || !strings.Contains(err.Error(), "GATEWAY_MODE") || !strings.Contains(err.Error(), "GATEWAY_TOKEN_PLACEMENT") {
		t.Fatalf("bad gateway values: %v", err)
	}

	setEnv(t, ListenerPrefix, map[string]string{"LISTENER_CONNECTION_STRING": "Endpoint=sb://ns.servicebus.windows.net/;SharedAccessKeyName=l;SharedAccessKey=" + testSecret + ";EntityPath=hc",
		"LISTENER_TOKEN_PLACEMENT": "query"})
	l, err := LoadListener(nil, io.Discard)
	if err != nil || l.TokenPlacement != "query" {
		t.Fatalf("listener: placement %q, %v", l.TokenPlacement, err)
	}
	setEnv(t, ListenerPrefix, map[string]string{"LISTENER_CONNECTION_STRING": "Endpoint=sb://ns.servicebus.windows.net/;SharedAccessKeyName=l;SharedAccessKey=" + testSecret + ";EntityPath=hc",
		"LISTENER_TOKEN_PLACEMENT": "both"})
	if _, err := LoadListener(nil, io.Discard); err == nil || !strings.Contains(err.Error(), "LISTENER_TOKEN_PLACEMENT") {
		t.Fatalf("bad listener value: %v", err)
	}

	setEnv(t, EmulatorPrefix, map[string]string{"RELAY_EMULATOR_TOKEN_PLACEMENT": "query"})
	e, err := LoadEmulator(nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	if e.TokenPlacement != "query" { // emulator.ConfigFrom maps it to QueryTokenOnly (tested there)
		t.Fatalf("emulator: TokenPlacement %q", e.TokenPlacement)
	}
	setEnv(t, EmulatorPrefix, nil)
	e, err = LoadEmulator([]string{"--token-placement", "header"}, nil)
	if err == nil || !strings.Contains(err.Error(), "TOKEN_PLACEMENT") {
		t.Fatalf("bad emulator value: %v", err)
	}
}
