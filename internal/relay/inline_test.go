package relay

import (
	"bytes"
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"
)

// inlineServer is a real HTTP server on loopback that answers every
// request with its own remote address (which connection carried it) and
// counts the connections it accepted.
type inlineServer struct {
	*httptest.Server
	mu    sync.Mutex
	conns int
}

func newInlineServer(t *testing.T, h http.HandlerFunc) *inlineServer {
	t.Helper()
	s := &inlineServer{}
	if h == nil {
		h = func(w http.ResponseWriter, r *http.Request) {
			io.Copy(io.Discard, r.Body)
			io.WriteString(w, r.RemoteAddr)
		}
	}
	s.Server = httptest.NewUnstartedServer(h)
	s.Config.ConnState = func(c net.Conn, st http.ConnState) {
		if st == http.StateNew {
			s.mu.Lock()
			s.conns++
			s.mu.Unlock()
		}
	}
	t.Cleanup(s.Close)
	return s
}

func (s *inlineServer) accepted() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.conns
}

// post sends body through rt and returns the answer's body.
func post(t *testing.T, ctx context.Context, rt http.RoundTripper, u string, body []byte) (string, error) {
	t.Helper()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, u, bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	resp, err := rt.RoundTrip(req)
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	return string(b), err
}

func TestInlineReusesItsConnection(t *testing.T) {
	s := newInlineServer(t, nil)
	s.Start()
	rt := newInlineTransport(&http.Transport{})
	var first string
	for i := range 5 {
		got, err := post(t, t.Context(), rt, s.URL+"/x", []byte(`{"message":"hi"}`))
		if err != nil {
			t.Fatalf("request %d: %v", i, err)
		}
		if i == 0 {
			first = got
		} else if got != first {
			t.Fatalf("request %d came on %s, the first on %s: the connection was not reused", i, got, first)
		}
	}
	if n := s.accepted(); n != 1 {
		t.Fatalf("server accepted %d connections for 5 sequential requests, want 1", n)
	}
}

// A connection the server closed while it sat idle is noticed before it
// is used: the next request succeeds on a new one.
func TestInlineRedialsAfterTheServerClosedAnIdleConnection(t *testing.T) {
	closed := make(chan struct{}, 1)
	s := newInlineServer(t, nil)
	s.Config.ConnState = func(c net.Conn, st http.ConnState) {
		switch st {
		case http.StateNew:
			s.mu.Lock()
			s.conns++
			s.mu.Unlock()
		case http.StateIdle:
			c.Close()
			closed <- struct{}{}
		}
	}
	s.Start()
	rt := newInlineTransport(&http.Transport{})
	first, err := post(t, t.Context(), rt, s.URL, []byte("a"))
	if err != nil {
		t.Fatal(err)
	}
	<-closed // the server closed it, and loopback delivered the FIN on close
	second, err := post(t, t.Context(), rt, s.URL, []byte("b"))
	if err != nil {
		t.Fatalf("request after the server closed the idle connection: %v", err)
	}
	if second == first || s.accepted() != 2 {
		t.Fatalf("second request on %s (first %s), %d connections: want a new connection", second, first, s.accepted())
	}
}

// Cancelling the context ends an exchange blocked on the server, and the
// connection it was on is not used again.
func TestInlineCancelEndsTheExchange(t *testing.T) {
	entered, release := make(chan struct{}), make(chan struct{})
	var once sync.Once
	s := newInlineServer(t, func(w http.ResponseWriter, r *http.Request) {
		io.Copy(io.Discard, r.Body)
		if r.URL.Path == "/block" {
			once.Do(func() { close(entered) })
			<-release
		}
		io.WriteString(w, r.RemoteAddr)
	})
	s.Start()
	defer close(release)
	rt := newInlineTransport(&http.Transport{})
	first, err := post(t, t.Context(), rt, s.URL, nil)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(t.Context())
	errc := make(chan error, 1)
	go func() {
		_, err := post(t, ctx, rt, s.URL+"/block", nil)
		errc <- err
	}()
	<-entered
	cancel()
	if err := <-errc; !errors.Is(err, context.Canceled) {
		t.Fatalf("cancelled exchange: got %v, want context.Canceled", err)
	}
	third, err := post(t, t.Context(), rt, s.URL, nil)
	if err != nil {
		t.Fatal(err)
	}
	if third == first {
		t.Fatalf("the connection of the cancelled exchange (%s) was used again", first)
	}
}

// A body closed before its end keeps the connection only when the rest
// is small; one abandoned with much left closes it.
func TestInlineEarlyClose(t *testing.T) {
	s := newInlineServer(t, func(w http.ResponseWriter, r *http.Request) {
		n := 100
		if r.URL.Path == "/big" {
			n = 1 << 20
		}
		io.WriteString(w, r.RemoteAddr+"\n"+strings.Repeat("x", n))
	})
	s.Start()
	rt := newInlineTransport(&http.Transport{})
	from := func(path string) string {
		req, _ := http.NewRequestWithContext(t.Context(), http.MethodGet, s.URL+path, nil)
		resp, err := rt.RoundTrip(req)
		if err != nil {
			t.Fatal(err)
		}
		line, err := readLine(resp.Body)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if _, err := resp.Body.Read(make([]byte, 1)); err == nil {
			t.Fatal("Read after Close succeeded")
		}
		return line
	}
	a, b := from("/small"), from("/small")
	if a != b {
		t.Fatalf("closed with 100 bytes left: the next request came on %s, not %s", b, a)
	}
	c, d := from("/big"), from("/small")
	if c != b || d == c {
		t.Fatalf("closed with 1 MiB left: requests on %s then %s, want %s then a new connection", c, d, b)
	}
}

// readLine reads up to the first newline, byte by byte.
func readLine(r io.Reader) (string, error) {
	var b []byte
	one := make([]byte, 1)
	for {
		if _, err := io.ReadFull(r, one); err != nil {
			return string(b), err
		}
		if one[0] == '\n' {
			return string(b), nil
		}
		b = append(b, one[0])
	}
}

// What the inline path does not take goes through the base Transport: a
// body over the inline limit, and any request its Proxy sends elsewhere.
func TestInlineLeavesTheRestToTheBaseTransport(t *testing.T) {
	s := newInlineServer(t, nil)
	s.Start()
	rt := newInlineTransport(&http.Transport{})
	small, err := post(t, t.Context(), rt, s.URL, []byte("a"))
	if err != nil {
		t.Fatal(err)
	}
	large, err := post(t, t.Context(), rt, s.URL, bytes.Repeat([]byte("a"), inlineMaxBody+1))
	if err != nil {
		t.Fatal(err)
	}
	again, err := post(t, t.Context(), rt, s.URL, []byte("a"))
	if err != nil {
		t.Fatal(err)
	}
	if large == small || again != small {
		t.Fatalf("small on %s, large on %s, small again on %s: want the large body on the base Transport's own connection", small, large, again)
	}

	var proxied sync.Map
	proxy := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		proxied.Store(r.URL.String(), true) // a proxy gets the absolute URL
		io.WriteString(w, "via proxy")
	}))
	defer proxy.Close()
	pu, _ := url.Parse(proxy.URL)
	rt = newInlineTransport(&http.Transport{Proxy: http.ProxyURL(pu)})
	got, err := post(t, t.Context(), rt, "http://relay.invalid/hc", []byte("a"))
	if err != nil || got != "via proxy" {
		t.Fatalf("proxied request: %q, %v", got, err)
	}
	if _, ok := proxied.Load("http://relay.invalid/hc"); !ok {
		t.Fatal("the proxy did not get the request")
	}
}

// Over TLS: the base Transport's TLS settings verify the server, and the
// connection is kept.
func TestInlineTLS(t *testing.T) {
	s := newInlineServer(t, nil)
	s.StartTLS()
	base := &http.Transport{TLSClientConfig: s.Client().Transport.(*http.Transport).TLSClientConfig}
	rt := newInlineTransport(base)
	a, err := post(t, t.Context(), rt, s.URL, []byte("a"))
	if err != nil {
		t.Fatal(err)
	}
	b, err := post(t, t.Context(), rt, s.URL, []byte("b"))
	if err != nil || a != b || s.accepted() != 1 {
		t.Fatalf("TLS: %s then %s (%v), %d connections: want one kept connection", a, b, err, s.accepted())
	}
	if _, err := post(t, t.Context(), newInlineTransport(&http.Transport{}), s.URL, nil); err == nil {
		t.Fatal("a server certificate nobody trusts was accepted")
	}
}

// Idle connections close after IdleConnTimeout, and at most
// MaxIdleConnsPerHost stay idle per host.
func TestInlineIdleLimits(t *testing.T) {
	rt := newInlineTransport(&http.Transport{MaxIdleConnsPerHost: 2, IdleConnTimeout: time.Hour})
	defer rt.CloseIdleConnections()
	var pipes []net.Conn
	conn := func() *inlineConn {
		a, b := net.Pipe()
		pipes = append(pipes, b)
		return &inlineConn{key: "http://h:80", nc: a, tcp: a}
	}
	for range 3 {
		rt.putIdle(conn())
	}
	isClosed := func(i int) bool {
		pipes[i].SetReadDeadline(time.Now().Add(time.Millisecond))
		_, err := pipes[i].Read(make([]byte, 1))
		return errors.Is(err, io.EOF) || errors.Is(err, io.ErrClosedPipe)
	}
	if !isClosed(2) || isClosed(0) || isClosed(1) {
		t.Fatal("a third idle connection was kept with MaxIdleConnsPerHost 2")
	}
	rt.mu.Lock()
	rt.idle["http://h:80"][0].idleAt = time.Now().Add(-2 * time.Hour)
	rt.mu.Unlock()
	rt.closeExpired()
	if !isClosed(0) || isClosed(1) {
		t.Fatal("closeExpired: want only the connection idle past IdleConnTimeout closed")
	}
	rt.CloseIdleConnections()
	if !isClosed(1) {
		t.Fatal("CloseIdleConnections left an idle connection open")
	}
}
