package azauth_test

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore"
	"github.com/Azure/azure-sdk-for-go/sdk/azcore/cloud"
	"github.com/Azure/azure-sdk-for-go/sdk/azcore/policy"
	"github.com/Azure/azure-sdk-for-go/sdk/azidentity"

	"github.com/relaygate/relaygate/internal/azauth"
	"github.com/relaygate/relaygate/internal/emulator"
	"github.com/relaygate/relaygate/internal/emulator/emulatortest"
	"github.com/relaygate/relaygate/internal/relay"
	"github.com/relaygate/relaygate/internal/testlog"
)

// fakeCredential is an azcore.TokenCredential whose GetToken is a function.
type fakeCredential func(ctx context.Context, o policy.TokenRequestOptions) (azcore.AccessToken, error)

func (f fakeCredential) GetToken(ctx context.Context, o policy.TokenRequestOptions) (azcore.AccessToken, error) {
	return f(ctx, o)
}

// TestSourceCachesAndRefreshes: concurrent callers share one fetch; the
// token is reused until RefreshBefore its expiry (or RefreshOn), then
// fetched again; the scope is Azure Relay's.
func TestSourceCachesAndRefreshes(t *testing.T) {
	t.Parallel()
	base := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	var now atomic.Pointer[time.Time]
	now.Store(&base)
	var calls atomic.Int64
	release := make(chan struct{})
	cred := fakeCredential(func(ctx context.Context, o policy.TokenRequestOptions) (azcore.AccessToken, error) {
		if len(o.Scopes) != 1 || o.Scopes[0] != relay.EntraScope {
			t.Errorf("scopes %q", o.Scopes)
		}
		n := calls.Add(1)
		if n == 1 {
			<-release
		}
		at := azcore.AccessToken{Token: "tok" + string(rune('0'+n)), ExpiresOn: now.Load().Add(time.Hour)}
		if n == 2 {
			at.RefreshOn = now.Load().Add(10 * time.Minute)
		}
		return at, nil
	})
	s := azauth.NewSource(cred, azauth.SourceOptions{Now: func() time.Time { return *now.Load() }})

	var wg sync.WaitGroup
	toks := make([]string, 8)
	for i := range toks {
		wg.Go(func() {
			at, err := s.Token(context.Background())
			if err != nil {
				t.Error(err)
			}
			toks[i] = at.Token
		})
	}
	close(release)
	wg.Wait()
	for _, tok := range toks {
		if tok != "tok1" {
			t.Fatalf("tokens %q, want all tok1 from one fetch", toks)
		}
	}
	step := func(d time.Duration) {
		n := now.Load().Add(d)
		now.Store(&n)
	}
	step(54 * time.Minute) // 6 min left: still cached
	if at, _ := s.Token(context.Background()); at.Token != "tok1" || calls.Load() != 1 {
		t.Fatalf("got %v after %d calls, want cached tok1", at, calls.Load())
	}
	step(2 * time.Minute) // 4 min left: refresh
	if at, _ := s.Token(context.Background()); at.Token != "tok2" {
		t.Fatalf("got %v, want tok2", at)
	}
	step(11 * time.Minute) // past tok2's RefreshOn
	if at, _ := s.Token(context.Background()); at.Token != "tok3" || calls.Load() != 3 {
		t.Fatalf("got %v after %d calls, want tok3", at, calls.Load())
	}
}

// TestSourceErrors: a credential error is returned (and not cached), an
// empty token is an error, and a caller waiting for another's fetch gives
// up with its ctx.
func TestSourceErrors(t *testing.T) {
	t.Parallel()
	boom := errors.New("AADSTS700016: application not found")
	var fail atomic.Bool
	fail.Store(true)
	entered, release := make(chan struct{}, 1), make(chan struct{})
	s := azauth.NewSource(fakeCredential(func(ctx context.Context, _ policy.TokenRequestOptions) (azcore.AccessToken, error) {
		if fail.Load() {
			return azcore.AccessToken{}, boom
		}
		entered <- struct{}{}
		<-release
		return azcore.AccessToken{}, nil // empty
	}), azauth.SourceOptions{})
	if _, err := s.Token(context.Background()); !errors.Is(err, boom) {
		t.Fatalf("got %v, want %v", err, boom)
	}
	fail.Store(false)
	errc := make(chan error, 1)
	go func() { _, err := s.Token(context.Background()); errc <- err }()
	<-entered
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := s.Token(ctx); !errors.Is(err, context.Canceled) {
		t.Fatalf("waiting caller: got %v, want context.Canceled", err)
	}
	close(release)
	if err := <-errc; err == nil || !strings.Contains(err.Error(), "empty token") {
		t.Fatalf("empty token: got %v", err)
	}
}

// authority is a local Microsoft Entra ID stand-in for azidentity's
// client-credentials flow: OpenID discovery and a token endpoint that
// checks the client secret and mints a token signed by the emulator's
// issuer, with the roles given to the client.
type authority struct {
	t      *testing.T
	iss    *emulator.EntraIssuer
	tenant string
	client string
	secret string
	roles  []string

	tokenRequests atomic.Int64
	mu            sync.Mutex
	minted        []string
}

func (a *authority) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	base := "https://" + r.Host + "/" + a.tenant
	switch r.URL.Path {
	case "/" + a.tenant + "/v2.0/.well-known/openid-configuration":
		writeJSON(w, http.StatusOK, map[string]any{
			"token_endpoint":         base + "/oauth2/v2.0/token",
			"authorization_endpoint": base + "/oauth2/v2.0/authorize",
			"issuer":                 base + "/v2.0",
		})
	case "/" + a.tenant + "/oauth2/v2.0/token":
		a.tokenRequests.Add(1)
		// MSAL adds openid, offline_access and profile to the scope.
		if err := r.ParseForm(); err != nil || r.PostForm.Get("grant_type") != "client_credentials" ||
			!strings.HasPrefix(r.PostForm.Get("scope"), relay.EntraScope) || r.PostForm.Get("client_id") != a.client {
			a.t.Errorf("token request: grant %q, scope %q, client %q", r.PostForm.Get("grant_type"), r.PostForm.Get("scope"), r.PostForm.Get("client_id"))
			writeJSON(w, http.StatusBadRequest, map[string]any{"error": "invalid_request"})
			return
		}
		if r.PostForm.Get("client_secret") != a.secret {
			writeJSON(w, http.StatusUnauthorized, map[string]any{"error": "invalid_client", "error_description": "AADSTS7000215: Invalid client secret provided."})
			return
		}
		tok, err := a.iss.Mint(emulator.EntraClaims{Roles: a.roles, Subject: a.client})
		if err != nil {
			a.t.Error(err)
		}
		a.mu.Lock()
		a.minted = append(a.minted, tok)
		a.mu.Unlock()
		writeJSON(w, http.StatusOK, map[string]any{"token_type": "Bearer", "expires_in": 3599, "ext_expires_in": 3599, "access_token": tok})
	default:
		a.t.Errorf("unexpected authority request %s %s", r.Method, r.URL)
		http.NotFound(w, r)
	}
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	json.NewEncoder(w).Encode(v)
}

// clientSecretSource builds a real azidentity ClientSecretCredential aimed
// at srv (authority host, instance discovery off, its TLS CA trusted) and
// wraps it in a Source.
func clientSecretSource(t *testing.T, srv *httptest.Server, a *authority, secret string) *azauth.Source {
	t.Helper()
	cred, err := azidentity.NewClientSecretCredential(a.tenant, a.client, secret, &azidentity.ClientSecretCredentialOptions{
		ClientOptions: azcore.ClientOptions{
			Cloud:     cloud.Configuration{ActiveDirectoryAuthorityHost: srv.URL + "/"},
			Transport: srv.Client(),
			Retry:     policy.RetryOptions{MaxRetries: -1},
		},
		DisableInstanceDiscovery: true,
	})
	if err != nil {
		t.Fatal(err)
	}
	return azauth.NewSource(cred, azauth.SourceOptions{})
}

// TestClientSecretCredentialEndToEnd drives azidentity's own request and
// caching path against a local authority: the token it returns opens a
// gateway pool through the emulator in Entra mode to a listener, one token
// request serves every pooled connection, a wrong secret fails cleanly,
// and no client secret or token reaches any log.
// startReceiver runs a relay.Listener with cfg whose connections each hand
// their first message to the returned channel. It is connected on return
// and closed at cleanup.
func startReceiver(t *testing.T, ctx context.Context, cfg relay.ListenerConfig, log *slog.Logger) (*relay.Listener, <-chan string) {
	t.Helper()
	got := make(chan string, 1)
	cfg.ConnHandler = func(ctx context.Context, c *relay.ListenerConn) {
		if _, data, err := c.Read(ctx); err == nil {
			got <- string(data)
		}
	}
	l, err := relay.NewListener(cfg, log)
	if err != nil {
		t.Fatal(err)
	}
	go l.Run(t.Context())
	t.Cleanup(func() { l.Close() })
	if err := l.WaitConnected(ctx); err != nil {
		t.Fatal(err)
	}
	return l, got
}

// sendOne opens a pool with cfg, sends msg once it is ready and waits for
// got to deliver it. The pool is closed at cleanup.
func sendOne(t *testing.T, ctx context.Context, cfg relay.PoolConfig, log *slog.Logger, got <-chan string, msg string) *relay.Pool {
	t.Helper()
	p, err := relay.NewPool(cfg, log, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { p.Close(context.Background()) })
	if err := p.WaitReady(ctx); err != nil {
		t.Fatal(err)
	}
	if err := p.Send(ctx, relay.Message{ID: "m", Type: relay.MessageText, Data: []byte(msg)}); err != nil {
		t.Fatal(err)
	}
	select {
	case m := <-got:
		if m != msg {
			t.Fatalf("got %q, want %q", m, msg)
		}
	case <-ctx.Done():
		t.Fatal("nothing delivered")
	}
	return p
}

func TestClientSecretCredentialEndToEnd(t *testing.T) {
	t.Parallel()
	emu := emulatortest.Start(t, func(c *emulator.Config) { c.Entra = &emulator.EntraConfig{} })
	a := &authority{t: t, iss: emu.Entra(), tenant: "00000000-0000-0000-0000-0000000000aa", client: "11111111-2222-3333-4444-555555555555",
		secret: "test-client-secret-" + emulatortest.RandomKey(), roles: []string{"Azure Relay Sender"}}
	srv := httptest.NewTLSServer(a)
	t.Cleanup(srv.Close)
	logger, logs := testlog.New(t)

	// The listener authenticates with a token minted directly.
	listenTok, err := emu.Entra().Mint(emulator.EntraClaims{Roles: []string{"Listen"}})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(t.Context(), 20*time.Second)
	defer cancel()
	l, got := startReceiver(t, ctx, relay.ListenerConfig{
		Credentials: relay.Credentials{Host: emu.Addr(), EntityPath: "hc1", Insecure: true,
			TokenSource: relay.TokenSourceFunc(func(context.Context) (relay.AccessToken, error) {
				return relay.AccessToken{Token: listenTok, ExpiresOn: time.Now().Add(time.Hour)}, nil
			})},
	}, logger)

	src := clientSecretSource(t, srv, a, a.secret)
	p := sendOne(t, ctx, relay.PoolConfig{Size: 3,
		Credentials: relay.Credentials{Host: emu.Addr(), EntityPath: "hc1", Insecure: true, TokenSource: src}}, logger, got, "via azidentity")
	for p.Stats().Ready < 3 {
		if err := p.WaitReady(ctx); err != nil || ctx.Err() != nil {
			t.Fatalf("pool: %+v", p.Stats())
		}
		select {
		case <-logs.Wrote():
		case <-ctx.Done():
		}
	}
	if n := a.tokenRequests.Load(); n != 1 {
		t.Errorf("authority got %d token requests for 3 pooled connections, want 1 (cached)", n)
	}

	// A wrong client secret: the SDK's error names the failure, never the
	// secret, and the relay is never dialled with a token.
	wrong := "wrong-secret-" + emulatortest.RandomKey()
	_, err = clientSecretSource(t, srv, a, wrong).Token(ctx)
	if err == nil || !strings.Contains(err.Error(), "AADSTS7000215") {
		t.Fatalf("wrong secret: got %v", err)
	}
	p.Close(ctx)
	l.Close()
	a.mu.Lock()
	secrets := append([]string{a.secret, wrong, listenTok}, a.minted...)
	a.mu.Unlock()
	testlog.AssertNoSecrets(t, logs.String(), secrets...)
	testlog.AssertNoSecrets(t, err.Error(), a.secret, wrong)
}

// TestNewCredential: both kinds build without network I/O.
func TestNewCredential(t *testing.T) {
	t.Parallel()
	if _, err := azauth.NewCredential(azauth.Options{}); err != nil {
		t.Errorf("DefaultAzureCredential: %v", err)
	}
	if _, err := azauth.NewTokenSource(azauth.Options{ManagedIdentityClientID: "00000000-0000-0000-0000-000000000001"}); err != nil {
		t.Errorf("managed identity: %v", err)
	}
}

// TestDefaultAzureCredentialWithEmulatorAuthority runs Entra mode as a
// developer would, with no Azure: relay-emulator over TLS in Entra mode is
// also the token endpoint; NewTokenSource's DefaultAzureCredential picks
// the client secret from AZURE_* variables; the gateway pool and the
// listener each get a token for their own application and relay a message.
// Not parallel: it sets environment variables.
func TestDefaultAzureCredentialWithEmulatorAuthority(t *testing.T) {
	caFile := filepath.Join(t.TempDir(), "ca.pem")
	sendSecret, listenSecret := "send-secret-"+emulatortest.RandomKey(), "listen-secret-"+emulatortest.RandomKey()
	emu := emulatortest.Start(t, func(c *emulator.Config) {
		c.TLS = &emulator.TLSConfig{CAFile: caFile}
		c.Entra = &emulator.EntraConfig{Clients: []emulator.EntraClient{
			{ID: "gateway-app", Secret: sendSecret, Roles: []string{"Azure Relay Sender"}},
			{ID: "listener-app", Secret: listenSecret, Roles: []string{"Listen"}},
		}}
	})
	pem, err := os.ReadFile(caFile)
	if err != nil {
		t.Fatal(err)
	}
	roots := x509.NewCertPool()
	roots.AppendCertsFromPEM(pem)
	client := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: roots}}}
	t.Cleanup(client.CloseIdleConnections) // before the emulator's Close waits for them
	authority := "https://" + emu.Addr() + "/"
	logger, logs := testlog.New(t)
	ctx, cancel := context.WithTimeout(t.Context(), 20*time.Second)
	defer cancel()

	lcred, err := azidentity.NewClientSecretCredential("relaygate-emulator", "listener-app", listenSecret, &azidentity.ClientSecretCredentialOptions{
		ClientOptions:            azcore.ClientOptions{Cloud: cloud.Configuration{ActiveDirectoryAuthorityHost: authority}, Transport: client},
		DisableInstanceDiscovery: true,
	})
	if err != nil {
		t.Fatal(err)
	}
	l, got := startReceiver(t, ctx, relay.ListenerConfig{
		Credentials: relay.Credentials{Host: emu.Addr(), EntityPath: "hc1", TokenSource: azauth.NewSource(lcred, azauth.SourceOptions{})},
		HTTPClient:  client,
	}, logger)

	t.Setenv("AZURE_TENANT_ID", "relaygate-emulator")
	t.Setenv("AZURE_CLIENT_ID", "gateway-app")
	t.Setenv("AZURE_CLIENT_SECRET", sendSecret)
	t.Setenv("AZURE_AUTHORITY_HOST", authority)
	t.Setenv("AZURE_TOKEN_CREDENTIALS", "EnvironmentCredential")
	src, err := azauth.NewTokenSource(azauth.Options{ClientOptions: azcore.ClientOptions{Transport: client}, DisableInstanceDiscovery: true})
	if err != nil {
		t.Fatal(err)
	}
	p := sendOne(t, ctx, relay.PoolConfig{Size: 2, HTTPClient: client,
		Credentials: relay.Credentials{Host: emu.Addr(), EntityPath: "hc1", TokenSource: src}}, logger, got, "dev loop")

	// The emulator's authority refuses a wrong secret as Entra would.
	bad, _ := azidentity.NewClientSecretCredential("relaygate-emulator", "gateway-app", "wrong-"+sendSecret, &azidentity.ClientSecretCredentialOptions{
		ClientOptions:            azcore.ClientOptions{Cloud: cloud.Configuration{ActiveDirectoryAuthorityHost: authority}, Transport: client, Retry: policy.RetryOptions{MaxRetries: -1}},
		DisableInstanceDiscovery: true,
	})
	_, err = azauth.NewSource(bad, azauth.SourceOptions{}).Token(ctx)
	if err == nil || !strings.Contains(err.Error(), "AADSTS7000215") {
		t.Fatalf("wrong secret: got %v", err)
	}
	p.Close(ctx)
	l.Close()
	tok, _ := src.Token(ctx)
	testlog.AssertNoSecrets(t, logs.String(), sendSecret, listenSecret, tok.Token)
	testlog.AssertNoSecrets(t, err.Error(), sendSecret)
}
