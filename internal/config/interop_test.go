package config

import (
	"io"
	"strings"
	"testing"

	"github.com/relaygate/relaygate/internal/testlog"
)

// TestInteropVariables: GATEWAY_MODE, GATEWAY_TOKEN_PLACEMENT,
// LISTENER_TOKEN_PLACEMENT and RELAY_EMULATOR_TOKEN_PLACEMENT load with
// their defaults, accept their values and name themselves when wrong.
func TestInteropVariables(t *testing.T) {
	testlog.Setenv(t, nil, GatewayPrefix)
	g, err := LoadGateway(nil, io.Discard)
	if err != nil || g.Mode != GatewayModePool || g.TokenPlacement != "header" {
		t.Fatalf("gateway defaults: mode %q, placement %q, %v", g.Mode, g.TokenPlacement, err)
	}
	testlog.Setenv(t, map[string]string{"GATEWAY_MODE": "request", "GATEWAY_TOKEN_PLACEMENT": "auto"}, GatewayPrefix)
	if g, err = LoadGateway(nil, io.Discard); err != nil || g.Mode != GatewayModeRequest || g.TokenPlacement != "auto" {
		t.Fatalf("gateway: mode %q, placement %q, %v", g.Mode, g.TokenPlacement, err)
	}
	testlog.Setenv(t, map[string]string{"GATEWAY_MODE": "websocket", "GATEWAY_TOKEN_PLACEMENT": "cookie"}, GatewayPrefix)
	_, err = LoadGateway(nil, io.Discard)
	if err == nil || !strings.Contains(err.Error(), "GATEWAY_MODE") || !strings.Contains(err.Error(), "GATEWAY_TOKEN_PLACEMENT") {
		t.Fatalf("bad gateway values: %v", err)
	}

	testlog.Setenv(t, map[string]string{"LISTENER_CONNECTION_STRING": "Endpoint=sb://ns.servicebus.windows.net/;SharedAccessKeyName=l;SharedAccessKey=" + testSecret + ";EntityPath=hc",
		"LISTENER_TOKEN_PLACEMENT": "query"}, ListenerPrefix)
	l, err := LoadListener(nil, io.Discard)
	if err != nil || l.TokenPlacement != "query" {
		t.Fatalf("listener: placement %q, %v", l.TokenPlacement, err)
	}
	testlog.Setenv(t, map[string]string{"LISTENER_CONNECTION_STRING": "Endpoint=sb://ns.servicebus.windows.net/;SharedAccessKeyName=l;SharedAccessKey=" + testSecret + ";EntityPath=hc",
		"LISTENER_TOKEN_PLACEMENT": "both"}, ListenerPrefix)
	if _, err := LoadListener(nil, io.Discard); err == nil || !strings.Contains(err.Error(), "LISTENER_TOKEN_PLACEMENT") {
		t.Fatalf("bad listener value: %v", err)
	}

	testlog.Setenv(t, map[string]string{"RELAY_EMULATOR_TOKEN_PLACEMENT": "query"}, EmulatorPrefix)
	e, err := LoadEmulator(nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	if e.TokenPlacement != "query" { // emulator.ConfigFrom maps it to QueryTokenOnly (tested there)
		t.Fatalf("emulator: TokenPlacement %q", e.TokenPlacement)
	}
	testlog.Setenv(t, nil, EmulatorPrefix)
	e, err = LoadEmulator([]string{"--token-placement", "header"}, nil)
	if err == nil || !strings.Contains(err.Error(), "TOKEN_PLACEMENT") {
		t.Fatalf("bad emulator value: %v", err)
	}
}
