package relay_test

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"errors"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"github.com/relaygate/relaygate/internal/emulator"
	"github.com/relaygate/relaygate/internal/emulator/emulatortest"
	"github.com/relaygate/relaygate/internal/relay"
	"github.com/relaygate/relaygate/internal/testlog"
)

// startEntraEmulator runs an emulator in Entra mode. Its SAS rule is
// unused by these tests.
func startEntraEmulator(t *testing.T, opts ...func(*emulator.Config)) *emulator.Server {
	t.Helper()
	return emulatortest.Start(t, append([]func(*emulator.Config){func(c *emulator.Config) {
		c.Entra = &emulator.EntraConfig{}
	}}, opts...)...)
}

// entraCreds names emu's entity with src as the token source.
func entraCreds(emu *emulator.Server, entity string, src relay.TokenSource) relay.Credentials {
	return relay.Credentials{Host: emu.Addr(), EntityPath: entity, Insecure: !emu.TLS(), TokenSource: src}
}

// mintingSource is a fake identity provider: every Token call mints a new
// token with roles, valid for ttl, signed by the emulator's issuer. It
// records every token so tests can check none leaked, and signals each
// call on calls (non-blocking).
type mintingSource struct {
	iss   *emulator.EntraIssuer
	roles []string
	ttl   time.Duration
	calls chan struct{}

	mu     sync.Mutex
	minted []string
}

func newMintingSource(iss *emulator.EntraIssuer, ttl time.Duration, roles ...string) *mintingSource {
	return &mintingSource{iss: iss, roles: roles, ttl: ttl, calls: make(chan struct{}, 64)}
}

func (s *mintingSource) Token(context.Context) (relay.AccessToken, error) {
	exp := time.Now().Add(s.ttl).Truncate(time.Second)
	tok, err := s.iss.Mint(emulator.EntraClaims{Roles: s.roles, ExpiresAt: exp})
	if err != nil {
		return relay.AccessToken{}, err
	}
	s.mu.Lock()
	s.minted = append(s.minted, tok)
	s.mu.Unlock()
	select {
	case s.calls <- struct{}{}:
	default:
	}
	return relay.AccessToken{Token: tok, ExpiresOn: exp}, nil
}

func (s *mintingSource) tokens() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]string(nil), s.minted...)
}

// collect is a ConnHandler that forwards every message it reads to got.
func collect(got chan<- string) func(context.Context, *relay.ListenerConn) {
	return func(ctx context.Context, c *relay.ListenerConn) {
		for {
			_, data, err := c.Read(ctx)
			if err != nil {
				return
			}
			got <- string(data)
		}
	}
}

// TestEntraPoolThroughEmulatorToListener: a gateway pool and a listener
// that authenticate with Entra tokens only (no SAS key anywhere) relay a
// message through the emulator in Entra mode, and neither logs a token.
func TestEntraPoolThroughEmulatorToListener(t *testing.T) {
	t.Parallel()
	emu := startEntraEmulator(t)
	lsrc := newMintingSource(emu.Entra(), time.Hour, "Azure Relay Listener")
	psrc := newMintingSource(emu.Entra(), time.Hour, "Send")
	got := make(chan string, 4)
	llog, lbuf := testlog.New(t)
	l, err := relay.NewListener(relay.ListenerConfig{Credentials: entraCreds(emu, "hc1", lsrc), ConnHandler: collect(got)}, llog)
	if err != nil {
		t.Fatal(err)
	}
	go l.Run(t.Context())
	t.Cleanup(func() { l.Close() })
	if err := l.WaitConnected(waitCtx(t)); err != nil {
		t.Fatal(err)
	}

	plog, pbuf := testlog.New(t)
	p, err := relay.NewPool(relay.PoolConfig{Credentials: entraCreds(emu, "hc1", psrc), Size: 2}, plog, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { p.Close(context.Background()) })
	if err := p.WaitReady(waitCtx(t)); err != nil {
		t.Fatal(err)
	}
	if err := p.Send(waitCtx(t), relay.Message{ID: "m1", Type: relay.MessageText, Data: []byte("hello entra")}); err != nil {
		t.Fatal(err)
	}
	select {
	case m := <-got:
		if m != "hello entra" {
			t.Fatalf("listener got %q", m)
		}
	case <-waitCtx(t).Done():
		t.Fatal("listener got nothing")
	}
	p.Close(waitCtx(t))
	l.Close()
	testlog.AssertNoSecrets(t, lbuf.String()+pbuf.String(), append(lsrc.tokens(), psrc.tokens()...)...)
}

// TestEntraTokensRenewed: with tokens that live 3 s, the listener sends
// renewToken and the pool replaces its connections before each token
// expires, driven by the token's own expiry; the emulator (grace 10 ms)
// would otherwise close the control channel. Event-driven: the test waits
// for the token sources' calls, not for time.
func TestEntraTokensRenewed(t *testing.T) {
	t.Parallel()
	emu := startEntraEmulator(t, func(c *emulator.Config) { c.TokenGrace = 10 * time.Millisecond })
	lsrc := newMintingSource(emu.Entra(), 3*time.Second, "Listen")
	psrc := newMintingSource(emu.Entra(), 3*time.Second, "Send")
	got := make(chan string, 16)
	l := runListener(t, emu, "hc1", relay.ListenerConfig{Credentials: entraCreds(emu, "hc1", lsrc),
		ConnHandler: collect(got), RenewBefore: 2 * time.Second})
	p, err := relay.NewPool(relay.PoolConfig{Credentials: entraCreds(emu, "hc1", psrc), Size: 1,
		RenewBefore: 2 * time.Second, Backoff: []time.Duration{0, 10 * time.Millisecond}}, testLogger(t, "pool"), nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { p.Close(context.Background()) })
	if err := p.WaitReady(waitCtx(t)); err != nil {
		t.Fatal(err)
	}
	// The control channel's first token plus three renewals outlive
	// several token lifetimes.
	ctx := waitCtx(t)
	for i := range 4 {
		select {
		case <-lsrc.calls:
		case <-ctx.Done():
			t.Fatalf("listener fetched %d tokens, want 4", i)
		}
	}
	for p.Stats().Renewals < 2 {
		select {
		case <-psrc.calls:
		case <-ctx.Done():
			t.Fatalf("pool renewed %d times, want 2", p.Stats().Renewals)
		}
	}
	if n := l.Sessions(); n != 1 {
		t.Errorf("listener opened %d control channels, want 1 (renewToken keeps it)", n)
	}
	if err := p.Send(ctx, relay.Message{ID: "after", Type: relay.MessageText, Data: []byte("still here")}); err != nil {
		t.Fatal(err)
	}
	select {
	case m := <-got:
		if m != "still here" {
			t.Fatalf("got %q", m)
		}
	case <-ctx.Done():
		t.Fatal("no message after renewals")
	}
}

// TestEntraStaleTokenDoesNotSpin: a token source that keeps returning the
// same token (as identity libraries do until shortly before expiry) must
// not make the pool redial in a loop; the connection stays up.
func TestEntraStaleTokenDoesNotSpin(t *testing.T) {
	t.Parallel()
	emu := startEntraEmulator(t)
	runListener(t, emu, "hc1", relay.ListenerConfig{Credentials: entraCreds(emu, "hc1", newMintingSource(emu.Entra(), time.Hour, "Listen")), ConnHandler: echo})
	exp := time.Now().Add(90 * time.Second).Truncate(time.Second)
	tok, err := emu.Entra().Mint(emulator.EntraClaims{Roles: []string{"Send"}, ExpiresAt: exp})
	if err != nil {
		t.Fatal(err)
	}
	var calls atomic.Int64
	src := relay.TokenSourceFunc(func(context.Context) (relay.AccessToken, error) {
		calls.Add(1)
		return relay.AccessToken{Token: tok, ExpiresOn: exp}, nil
	})
	// RenewBefore (5m) > the token's life: renewal is due at once.
	p, err := relay.NewPool(relay.PoolConfig{Credentials: entraCreds(emu, "hc1", src), Size: 1}, testLogger(t, "pool"), nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { p.Close(context.Background()) })
	if err := p.WaitReady(waitCtx(t)); err != nil {
		t.Fatal(err)
	}
	if err := p.Send(waitCtx(t), relay.Message{ID: "x", Type: relay.MessageText, Data: []byte("x")}); err != nil {
		t.Fatal(err)
	}
	// One dial, one renewal attempt refused as stale; the retry is a
	// minute away (RenewBefore/5).
	if n, s := calls.Load(), p.Stats(); n > 3 || s.Dials != 1 || s.Renewals != 0 {
		t.Errorf("token source called %d times, stats %+v: the pool spins on a stale token", n, s)
	}
}

// TestEntraEmulatorRejections: each bad Entra token gets the same status
// line as the corresponding SAS failure, and a good one connects.
func TestEntraEmulatorRejections(t *testing.T) {
	t.Parallel()
	emu := startEntraEmulator(t)
	iss := emu.Entra()
	runListener(t, emu, "hc1", relay.ListenerConfig{Credentials: entraCreds(emu, "hc1", newMintingSource(iss, time.Hour, "Listen")), ConnHandler: echo})
	kid := jwksKid(t, iss)
	now := time.Now()
	mint := func(c emulator.EntraClaims) string {
		t.Helper()
		if c.Roles == nil {
			c.Roles = []string{"Send"}
		}
		tok, err := iss.Mint(c)
		if err != nil {
			t.Fatal(err)
		}
		return tok
	}
	good := mint(emulator.EntraClaims{})
	claims := jwt.MapClaims{"iss": iss.Issuer(), "aud": relay.EntraAudience, "exp": now.Add(time.Hour).Unix(), "roles": []string{"Send"}}
	otherKey, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	forged := sign(t, jwt.SigningMethodES256, kid, claims, otherKey)
	hsConfusion := sign(t, jwt.SigningMethodHS256, kid, claims, iss.JWKS())
	parts := strings.Split(good, ".")
	manage := strings.Split(mint(emulator.EntraClaims{Roles: []string{"Manage"}, Subject: "mallory"}), ".")
	tampered := parts[0] + "." + manage[1] + "." + parts[2]
	none := b64json(t, map[string]any{"alg": "none", "typ": "JWT", "kid": kid}) + "." + b64json(t, claims) + "."

	const (
		badSig    = "The token has an invalid signature."
		expired   = "The token is expired."
		audience  = "InvalidAudience: The token's audience is not valid for this entity."
		malformed = "MalformedToken:"
		role      = "Unauthorized access. 'Send' claim(s) are required"
	)
	tests := []struct {
		name   string
		tok    string
		status int // 0: accepted
		text   string
	}{
		{"good", good, 0, ""},
		{"good with Bearer", "Bearer " + good, 0, ""},
		{"audience with slash", mint(emulator.EntraClaims{Audience: relay.EntraAudience + "/"}), 0, ""},
		{"Azure role name", mint(emulator.EntraClaims{Roles: []string{"Azure Relay Sender"}}), 0, ""},
		{"wrong audience", mint(emulator.EntraClaims{Audience: "https://servicebus.azure.net"}), http.StatusForbidden, audience},
		{"wrong issuer", mint(emulator.EntraClaims{Issuer: "https://sts.windows.net/someone-else/"}), http.StatusUnauthorized, "InvalidIssuer:"},
		{"expired", mint(emulator.EntraClaims{NotBefore: now.Add(-2 * time.Hour), ExpiresAt: now.Add(-time.Minute)}), http.StatusUnauthorized, expired},
		{"not yet valid", mint(emulator.EntraClaims{NotBefore: now.Add(time.Hour), ExpiresAt: now.Add(2 * time.Hour)}), http.StatusUnauthorized, "The token is not valid yet."},
		{"alg none", none, http.StatusUnauthorized, badSig},
		{"forged signature", forged, http.StatusUnauthorized, badSig},
		{"tampered claims", tampered, http.StatusUnauthorized, badSig},
		{"HS256 with the public key", hsConfusion, http.StatusUnauthorized, badSig},
		{"wrong role", mint(emulator.EntraClaims{Roles: []string{"Listen"}}), http.StatusForbidden, role},
		{"no role", mint(emulator.EntraClaims{Roles: []string{}}), http.StatusForbidden, role},
		{"not a JWT", "abc.def.ghi", http.StatusUnauthorized, malformed},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			src := relay.TokenSourceFunc(func(context.Context) (relay.AccessToken, error) {
				return relay.AccessToken{Token: tt.tok, ExpiresOn: time.Now().Add(time.Minute)}, nil
			})
			for _, inQuery := range []bool{false, true} {
				ws, err := relay.Dial(waitCtx(t), entraCreds(emu, "hc1", src), relay.DialOptions{TokenInQuery: inQuery})
				if tt.status == 0 {
					if err != nil {
						t.Fatalf("query %v: %v", inQuery, err)
					}
					ws.CloseNow()
					continue
				}
				var re *relay.StatusError
				if !errors.As(err, &re) || re.StatusCode != tt.status || !strings.HasPrefix(re.Reason, tt.text) {
					t.Fatalf("query %v: got %v, want %d %q", inQuery, err, tt.status, tt.text)
				}
				if strings.Contains(err.Error(), tt.tok) {
					t.Fatalf("error leaks the token: %v", err)
				}
			}
		})
	}

	// The status lines match the SAS failures': an expired SAS token and
	// a SAS rule without Send.
	t.Run("same as SAS", func(t *testing.T) {
		t.Parallel()
		sas := emu.Credentials("hc1")
		_, err := relay.Dial(waitCtx(t), sas, relay.DialOptions{Now: func() time.Time { return now.Add(-2 * time.Hour) }})
		var re *relay.StatusError
		if !errors.As(err, &re) || re.StatusCode != http.StatusUnauthorized || !strings.HasPrefix(re.Reason, expired) {
			t.Fatalf("SAS expired: %v, want 401 %q", err, expired)
		}
	})

	// A listener whose token lacks Listen is refused at once.
	t.Run("listener with Send only", func(t *testing.T) {
		t.Parallel()
		_, errc := startListener(t, emu, "hc1", relay.ListenerConfig{Credentials: entraCreds(emu, "hc1", newMintingSource(iss, time.Hour, "Send")), ConnHandler: echo})
		if err := runError(t, errc); !errors.Is(err, relay.ErrForbidden) {
			t.Fatalf("got %v, want ErrForbidden", err)
		}
	})
}

// TestEntraTokenSourceErrors: a failing or empty token source fails the
// dial with ErrTokenSource before anything is sent, and a SAS token cannot
// be minted from Entra credentials.
func TestEntraTokenSourceErrors(t *testing.T) {
	t.Parallel()
	boom := errors.New("no identity available")
	for _, tt := range []struct {
		name string
		src  relay.TokenSourceFunc
	}{
		{"error", func(context.Context) (relay.AccessToken, error) { return relay.AccessToken{}, boom }},
		{"empty", func(context.Context) (relay.AccessToken, error) {
			return relay.AccessToken{ExpiresOn: time.Now().Add(time.Hour)}, nil
		}},
		{"expired", func(context.Context) (relay.AccessToken, error) {
			return relay.AccessToken{Token: "x.y.z", ExpiresOn: time.Now().Add(-time.Second)}, nil
		}},
		{"no expiry", func(context.Context) (relay.AccessToken, error) { return relay.AccessToken{Token: "x.y.z"}, nil }},
	} {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			c := relay.Credentials{Host: "127.0.0.1:1", EntityPath: "hc", Insecure: true, TokenSource: tt.src}
			if _, err := relay.Dial(waitCtx(t), c, relay.DialOptions{}); !errors.Is(err, relay.ErrTokenSource) {
				t.Fatalf("got %v, want ErrTokenSource", err)
			}
			if _, _, err := c.Token(time.Now(), time.Hour); !errors.Is(err, relay.ErrTokenMintingUnavailable) {
				t.Fatalf("Token: got %v, want ErrTokenMintingUnavailable", err)
			}
		})
	}
	bad := relay.Credentials{Host: "h", EntityPath: "hc", KeyName: "k", Key: "secret",
		TokenSource: relay.TokenSourceFunc(func(context.Context) (relay.AccessToken, error) { return relay.AccessToken{}, nil })}
	if err := bad.Validate(); !errors.Is(err, relay.ErrInvalidCredentials) || strings.Contains(err.Error(), "secret") {
		t.Errorf("key with token source: got %v", err)
	}
}

func TestParseEntraConnectionString(t *testing.T) {
	t.Parallel()
	c, err := relay.ParseEntraConnectionString("Endpoint=sb://ns.servicebus.windows.net/;EntityPath=hc1")
	if err != nil || c.Host != "ns.servicebus.windows.net" || c.EntityPath != "hc1" || c.Insecure {
		t.Fatalf("got %v, %v", c, err)
	}
	for _, s := range []string{
		"Endpoint=sb://ns/;EntityPath=hc;SharedAccessKeyName=k;SharedAccessKey=secretkey",
		"Endpoint=sb://ns/;EntityPath=hc;SharedAccessSignature=SharedAccessSignature sr=x&sig=secretsig&se=1&skn=k",
		"Endpoint=sb://ns/",
		"EntityPath=hc",
	} {
		if _, err := relay.ParseEntraConnectionString(s); !errors.Is(err, relay.ErrInvalidCredentials) || strings.Contains(err.Error(), "secret") {
			t.Errorf("%q: got %v", s, err)
		}
	}
}

// jwksKid returns the key id the issuer publishes.
func jwksKid(t *testing.T, iss *emulator.EntraIssuer) string {
	t.Helper()
	var set struct {
		Keys []struct{ Kid, Alg, Kty string }
	}
	if err := json.Unmarshal(iss.JWKS(), &set); err != nil || len(set.Keys) != 1 || set.Keys[0].Alg != "ES256" || set.Keys[0].Kty != "EC" {
		t.Fatalf("JWKS %s: %v", iss.JWKS(), err)
	}
	return set.Keys[0].Kid
}

func sign(t *testing.T, m jwt.SigningMethod, kid string, c jwt.MapClaims, key any) string {
	t.Helper()
	tok := jwt.NewWithClaims(m, c)
	tok.Header["kid"] = kid
	s, err := tok.SignedString(key)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func b64json(t *testing.T, v any) string {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return base64.RawURLEncoding.EncodeToString(b)
}
