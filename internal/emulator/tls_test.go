package emulator_test

import (
	"crypto/tls"
	"crypto/x509"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"testing"

	"github.com/relaygate/relaygate/internal/emulator"
	"github.com/relaygate/relaygate/internal/emulator/emulatortest"
	"github.com/relaygate/relaygate/internal/relay"
)

func TestTLSWithGeneratedCA(t *testing.T) {
	t.Parallel()
	caFile := filepath.Join(t.TempDir(), "ca.pem")
	s := emulatortest.Start(t, func(c *emulator.Config) { c.TLS = &emulator.TLSConfig{CAFile: caFile} })
	pemData, err := os.ReadFile(caFile)
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(pemData) {
		t.Fatal("CA file holds no certificate")
	}
	tc := &tls.Config{RootCAs: pool}
	c := s.Credentials("hc1")
	if c.Insecure {
		t.Fatal("Credentials of a TLS emulator are Insecure")
	}
	cc, resp, err := dialWS(t, dialer(tc), c.WebSocketURL(relay.ActionListen, relay.URLOptions{}).String(), token(t, c), nil)
	if err != nil {
		t.Fatalf("wss listen: %v (%s)", err, status(resp))
	}
	sender := connectAsync(t, dialer(tc), c.WebSocketURL(relay.ActionConnect, relay.URLOptions{}).String(), token(t, c), nil)
	acc := readAccept(t, cc)
	if acc.Address[:6] != "wss://" {
		t.Errorf("accept address %q is not wss", acc.Address)
	}
	lws := acceptAddr(t, dialer(tc), acc.Address, nil)
	res := wait(t, sender)
	if res.err != nil {
		t.Fatalf("wss sender: %v", res.err)
	}
	res.ws.WriteMessage(1, []byte("over tls"))
	if _, data, err := lws.ReadMessage(); err != nil || string(data) != "over tls" {
		t.Fatalf("relayed over TLS: %q %v", data, err)
	}

	// HTTPS request mode and /healthz with the same CA; untrusted fails.
	hc := &http.Client{Transport: &http.Transport{TLSClientConfig: tc}}
	r, err := hc.Get("https://" + s.Addr() + "/healthz")
	if err != nil {
		t.Fatal(err)
	}
	io.Copy(io.Discard, r.Body)
	r.Body.Close()
	if _, err := http.Get("https://" + s.Addr() + "/healthz"); err == nil {
		t.Error("a client without the CA trusted the generated certificate")
	}
}
