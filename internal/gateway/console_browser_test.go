package gateway

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/chromedp/cdproto/runtime"
	"github.com/chromedp/chromedp"
	"github.com/google/uuid"
	"github.com/relaygate/relaygate/internal/config"
	"github.com/relaygate/relaygate/internal/emulator/emulatortest"
)

// chromiumPath is Debian's chromium (apt-get install -y chromium).
const chromiumPath = "/usr/bin/chromium"

// artifactPath is where test artifacts go: $ARTIFACTS_DIR, or artifacts/
// at the repository root (git-ignored).
func artifactPath(t *testing.T, name string) string {
	t.Helper()
	dir := os.Getenv("ARTIFACTS_DIR")
	if dir == "" {
		dir = filepath.Join("..", "..", "artifacts")
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	return filepath.Join(dir, name)
}

// browser starts headless Chromium for the test and returns its context.
// It skips only when chromium is missing and CI is not set.
func browser(t *testing.T) context.Context {
	t.Helper()
	if _, err := os.Stat(chromiumPath); err != nil {
		if os.Getenv("CI") == "" {
			t.Skipf("%s not found (apt-get install -y chromium); with CI set this test fails instead", chromiumPath)
		}
		t.Fatalf("CI is set and %s is missing: %v", chromiumPath, err)
	}
	actx, cancelAlloc := chromedp.NewExecAllocator(context.Background(),
		chromedp.ExecPath(chromiumPath),
		chromedp.Flag("headless", true),
		chromedp.Flag("no-sandbox", true),
		chromedp.Flag("disable-gpu", true),
		chromedp.Flag("disable-quic", true),
		chromedp.Flag("no-first-run", true),
		chromedp.Flag("disable-background-networking", true),
		chromedp.Flag("disable-component-update", true),
		chromedp.Flag("disable-sync", true),
		chromedp.Flag("disable-dev-shm-usage", true),
		chromedp.UserDataDir(t.TempDir()),
		chromedp.WindowSize(1280, 1000),
	)
	ctx, cancel := chromedp.NewContext(actx)
	t.Cleanup(func() {
		cancel()
		cancelAlloc()
	})
	// Start the browser with a context that has no deadline (the first
	// action binds the browser's life to its context).
	if err := chromedp.Do(ctx); err != nil {
		t.Fatalf("starting %s: %v", chromiumPath, err)
	}
	return ctx
}

// page is one browser tab on the console.
type page struct {
	t   *testing.T
	ctx context.Context

	mu       sync.Mutex
	problems []string // uncaught exceptions and console errors
}

func openPage(t *testing.T, browserCtx context.Context, url string) *page {
	t.Helper()
	ctx, cancel := chromedp.NewContext(browserCtx) // a new tab
	t.Cleanup(cancel)
	p := &page{t: t, ctx: ctx}
	messages := chromedp.Console(ctx)
	go func() {
		for m, err := range messages {
			if err != nil {
				return
			}
			// The browser logs its own failed fetches (401s are expected
			// in the API-key test); scripts' exceptions and errors count.
			if m.IsException() || m.Type == "error" && !strings.Contains(m.Text, "Failed to load resource") {
				p.mu.Lock()
				p.problems = append(p.problems, m.String())
				p.mu.Unlock()
			}
		}
	}()
	p.do("load the page", 15*time.Second, chromedp.Navigate(url))
	return p
}

func (p *page) do(what string, timeout time.Duration, steps ...chromedp.Action[chromedp.Void]) {
	p.t.Helper()
	ctx, cancel := context.WithTimeout(p.ctx, timeout)
	defer cancel()
	if err := chromedp.Do(ctx, steps...); err != nil {
		p.t.Fatalf("%s: %v\n%s", what, err, p.state())
	}
}

// eval returns the value of a JavaScript expression.
func eval[T any](p *page, expr string) T {
	p.t.Helper()
	ctx, cancel := context.WithTimeout(p.ctx, 10*time.Second)
	defer cancel()
	v, err := chromedp.Run(ctx, chromedp.Evaluate[T](expr))
	if err != nil {
		p.t.Fatalf("evaluate %s: %v", expr, err)
	}
	return v
}

// waitFor polls a JavaScript condition until it is true or the deadline.
func (p *page) waitFor(what, cond string, timeout time.Duration) {
	p.t.Helper()
	ctx, cancel := context.WithTimeout(p.ctx, timeout+time.Second)
	defer cancel()
	_, err := chromedp.Run(ctx, chromedp.Poll[bool](cond, chromedp.WithPollingInterval(50*time.Millisecond), chromedp.WithPollingTimeout(timeout)))
	if err != nil {
		p.t.Fatalf("waiting for %s (%s): %v\n%s", what, cond, err, p.state())
	}
}

// text returns an element's textContent.
func (p *page) text(id string) string {
	p.t.Helper()
	return eval[string](p, fmt.Sprintf(`document.getElementById(%q).textContent`, id))
}

// state describes the page for failure messages.
func (p *page) state() string {
	ctx, cancel := context.WithTimeout(p.ctx, 5*time.Second)
	defer cancel()
	s, err := chromedp.Run(ctx, chromedp.Evaluate[string](`[...document.querySelectorAll('[id]')]
		.filter((e) => e.children.length === 0 || ['feed-list', 'problem', 'token-problem'].includes(e.id))
		.map((e) => '#' + e.id + ': ' + e.textContent.trim().slice(0, 300)).join('\n')`))
	if err != nil {
		s = "(page state unavailable: " + err.Error() + ")"
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	return s + "\nconsole problems: " + strings.Join(p.problems, "; ")
}

func (p *page) checkClean() {
	p.t.Helper()
	if n := eval[int](p, `document.getElementById('csp-violations').children.length`); n != 0 {
		p.t.Errorf("%d Content-Security-Policy violations: %s", n, p.text("csp-violations"))
	}
	if n := eval[int](p, `localStorage.length + sessionStorage.length + document.cookie.length`); n != 0 {
		p.t.Errorf("the page stored something (%d)", n)
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if len(p.problems) > 0 {
		p.t.Errorf("script problems: %s", strings.Join(p.problems, "; "))
	}
}

func (p *page) screenshot(name string) {
	p.t.Helper()
	ctx, cancel := context.WithTimeout(p.ctx, 15*time.Second)
	defer cancel()
	png, err := chromedp.Run(ctx, chromedp.FullScreenshot(100))
	if err != nil {
		p.t.Fatalf("screenshot: %v", err)
	}
	path := artifactPath(p.t, name)
	if err := os.WriteFile(path, png, 0o644); err != nil {
		p.t.Fatal(err)
	}
	p.t.Logf("screenshot: %s", path)
}

// send fills the send form and submits it.
func (p *page) send(format, body string) {
	p.t.Helper()
	p.do("send "+body, 10*time.Second,
		chromedp.SetValue(chromedp.ID("send-format"), format),
		chromedp.SetValue(chromedp.ID("send-body"), body),
		chromedp.Evaluate[chromedp.Void](`document.getElementById('send-status').textContent = ''`),
		chromedp.Click(chromedp.ID("send-button")),
	)
	p.waitFor("the send result", `(() => { const s = document.getElementById('send-status').textContent; return s !== '' && s !== 'sending…'; })()`, 10*time.Second)
}

// TestConsoleInChromium drives the console in headless Chromium against a
// local-mode gateway: the target and readiness show, a message sent from
// the page appears in the received feed, a token is fetched and shown
// with its countdown, an invalid JSON body shows the problem in full, and
// shutting the gateway down with the feed open is prompt. A second
// gateway requires an API key, which the page sends from memory only.
func TestConsoleInChromium(t *testing.T) {
	bctx := browser(t)

	t.Run("local mode", func(t *testing.T) {
		g := startLocalGateway(t)
		p := openPage(t, bctx, g.base+"/")

		p.waitFor("the target", `document.getElementById('target-entity').textContent === 'relaygate'`, 10*time.Second)
		p.waitFor("readiness", `document.getElementById('ready-state').textContent === 'ready'`, 10*time.Second)
		p.waitFor("the live feed", `document.getElementById('feed-state').textContent === 'live'`, 10*time.Second)
		if got := p.text("target-mode"); !strings.HasPrefix(got, "local") {
			t.Errorf("mode %q", got)
		}
		if got := p.text("target-namespace"); got != g.creds.Host {
			t.Errorf("namespace %q, want %q", got, g.creds.Host)
		}
		if got := p.text("pool-state"); !strings.Contains(got, "/2 ready") {
			t.Errorf("pool %q", got)
		}

		// A JSON message and a text message appear in the received feed.
		nonce := uuid.NewString()
		p.send("json", `{"message": {"from": "chromium", "nonce": "`+nonce+`"}}`)
		if got := p.text("send-status"); got != "202 Accepted" {
			t.Fatalf("send status %q\n%s", got, p.state())
		}
		p.waitFor("the JSON message in the feed", fmt.Sprintf(`document.getElementById('feed-list').textContent.includes(%q)`, nonce), 10*time.Second)
		p.send("text", "plain text "+nonce)
		p.waitFor("the text message in the feed", fmt.Sprintf(`document.getElementById('feed-list').textContent.includes(%q)`, "plain text "+nonce), 10*time.Second)
		if n := eval[int](p, `document.getElementById('feed-list').children.length`); n != 2 {
			t.Errorf("%d feed items, want 2", n)
		}

		// A token with a TTL: shown with its URL and a countdown.
		p.do("request a token", 10*time.Second,
			chromedp.SetValue(chromedp.ID("token-ttl"), "120"),
			chromedp.Click(chromedp.ID("token-button")),
		)
		p.waitFor("the token", `document.getElementById('token-value').textContent.startsWith('SharedAccessSignature ')`, 10*time.Second)
		p.waitFor("the countdown", `/^\d+m \d+s left$/.test(document.getElementById('token-countdown').textContent)`, 5*time.Second)
		if got := p.text("token-url"); !strings.HasPrefix(got, "ws://"+g.creds.Host+"/$hc/relaygate?") || !strings.Contains(got, "sb-hc-token=") {
			t.Errorf("sender URL %q", got)
		}
		if got := p.text("token-status"); got != "200 OK" {
			t.Errorf("token status %q", got)
		}
		p.do("copy the token", 5*time.Second, chromedp.Click(chromedp.ID("token-copy")))
		p.waitFor("the copy feedback", `['Copied', 'Selected: press Ctrl+C'].includes(document.getElementById('token-copy').textContent)`, 5*time.Second)
		left := p.text("token-countdown")
		if !strings.HasPrefix(left, "2m 0s") && !strings.HasPrefix(left, "1m ") {
			t.Errorf("countdown %q for a 120 s token", left)
		}

		// An invalid JSON body: the problem document is shown in full.
		p.send("json", `{"message": `)
		if got := p.text("send-status"); got != "400 Bad Request" {
			t.Fatalf("invalid JSON: status %q\n%s", got, p.state())
		}
		p.waitFor("the problem", `!document.getElementById('problem').hidden`, 5*time.Second)
		prob := p.text("problem")
		for _, want := range []string{"title", "Invalid argument", "code", "invalid_argument", "status", "400", "detail", "request_id", "type", "urn:relaygate:problem:invalid_argument"} {
			if !strings.Contains(prob, want) {
				t.Errorf("problem panel lacks %q: %s", want, prob)
			}
		}
		if !strings.Contains(p.text("send-response"), "application/problem+json") {
			t.Errorf("response panel: %s", p.text("send-response"))
		}

		p.checkClean()
		// The browser enforces the policy: no HTML sinks, no eval, no
		// inline script.
		for _, probe := range []string{
			`document.createElement('div').innerHTML = '<b>x</b>'`,
			`eval('1')`,
			`(() => { const s = document.createElement('script'); s.text = 'window.inlineRan = true'; document.body.append(s); if (!window.inlineRan) throw new Error('blocked'); })()`,
		} {
			got, err := chromedp.Run(p.ctx, chromedp.Evaluate[string](
				`(() => { try { `+probe+`; return 'allowed'; } catch (e) { return 'blocked: ' + e.name; } })()`,
				func(ep *runtime.EvaluateParams) { ep.AllowUnsafeEvalBlockedByCSP = new(false) }, // DevTools' default bypasses the CSP for eval
			))
			if err != nil {
				t.Fatal(err)
			}
			if !strings.HasPrefix(got, "blocked") {
				t.Errorf("the page's CSP allows %s", probe)
			}
		}
		html, err := chromedp.Run(p.ctx, chromedp.OuterHTML(chromedp.CSS("html")))
		if err != nil {
			t.Fatal(err)
		}
		g.checkNoRelayKey(t, "the page", html)
		p.screenshot("console.png")

		// A problem for the token too (ttl above the cap), shown in place.
		p.do("request a bad token", 10*time.Second,
			chromedp.SetValue(chromedp.ID("token-ttl"), "999999999"),
			chromedp.Click(chromedp.ID("token-button")),
		)
		p.waitFor("the token problem", `document.getElementById('token-problem').textContent.includes('ttl')`, 10*time.Second)
		if !eval[bool](p, `document.getElementById('token-result').hidden`) {
			t.Error("the old token is still shown after a failed request")
		}

		// Shutdown with the feed open: prompt, and the page notices.
		start := time.Now()
		if err := g.stop(); err != nil {
			t.Fatalf("shutdown with the console open: %v", err)
		}
		if d := time.Since(start); d > 4500*time.Millisecond { // under the 5 s shutdown timeout: it did not wait for the stream
			t.Errorf("shutdown took %v with the console open", d)
		}
		p.waitFor("the feed to notice the shutdown", `document.getElementById('feed-state').textContent !== 'live'`, 5*time.Second)
		g.checkNoRelayKey(t, "the logs", g.logs.String())
	})

	t.Run("api key", func(t *testing.T) {
		g := startLocalGateway(t, consoleAPIKey)
		p := openPage(t, bctx, g.base+"/")

		p.waitFor("the key prompt", `document.getElementById('feed-state').textContent === 'API key required'`, 10*time.Second)
		p.waitFor("the target prompt", `document.getElementById('target-mode').textContent === 'API key required'`, 10*time.Second)
		p.send("json", `{"message": "no key"}`)
		if got := p.text("send-status"); got != "401 Unauthorized" {
			t.Errorf("send without a key: %q", got)
		}
		if !strings.Contains(p.text("problem"), "unauthenticated") {
			t.Errorf("problem %q", p.text("problem"))
		}

		// Type the key: the feed connects, sending works, as Bearer too.
		p.do("enter the key", 10*time.Second, chromedp.SendKeys(chromedp.ID("api-key"), consoleAPIKey))
		p.waitFor("the live feed", `document.getElementById('feed-state').textContent === 'live'`, 10*time.Second)
		p.waitFor("the target", `document.getElementById('target-entity').textContent === 'relaygate'`, 10*time.Second)
		nonce := uuid.NewString()
		p.send("json", `{"message": "`+nonce+`"}`)
		p.waitFor("the message in the feed", fmt.Sprintf(`document.getElementById('feed-list').textContent.includes(%q)`, nonce), 10*time.Second)
		p.do("switch to Bearer", 10*time.Second, chromedp.SetValue(chromedp.ID("auth-scheme"), "bearer"))
		p.send("text", "bearer "+nonce)
		if got := p.text("send-status"); got != "202 Accepted" {
			t.Errorf("send with Bearer: %q", got)
		}
		p.waitFor("the Bearer message in the feed", fmt.Sprintf(`document.getElementById('feed-list').textContent.includes(%q)`, "bearer "+nonce), 10*time.Second)

		// The key never went into a URL, storage or the logs.
		urls := eval[[]string](p, `[location.href, ...performance.getEntriesByType('resource').map((e) => e.name)]`)
		for _, u := range urls {
			if strings.Contains(u, consoleAPIKey) {
				t.Errorf("the API key is in a URL: %s", u)
			}
		}
		if len(urls) < 3 {
			t.Errorf("resource timing lists only %v", urls)
		}
		p.checkClean()
		if strings.Contains(g.logs.String(), consoleAPIKey) {
			t.Error("the API key is in the gateway's logs")
		}
		p.screenshot("console-api-key.png")
	})

	t.Run("standalone emulator without a listener", func(t *testing.T) {
		emu := emulatortest.Start(t)
		g := startConsoleGateway(t, func(c *config.Gateway) {
			cr := emu.Credentials("hc")
			c.Namespace, c.EntityPath, c.KeyName, c.Key, c.Emulator = cr.Host, cr.EntityPath, cr.KeyName, cr.Key, true
		})
		p := openPage(t, bctx, g.base+"/")

		p.waitFor("the target", `document.getElementById('target-mode').textContent === 'relay-emulator'`, 10*time.Second)
		p.waitFor("no feed", `document.getElementById('feed-state').textContent === 'off'`, 10*time.Second)
		p.waitFor("not ready", `document.getElementById('ready-state').textContent === 'not ready'`, 10*time.Second)
		if d := p.text("ready-detail"); d == "" {
			t.Error("no reason shown for not ready")
		}
		if got := p.text("pool-state"); !strings.HasPrefix(got, "0/2 ready") {
			t.Errorf("pool %q", got)
		}
		p.send("json", `{"message": "nobody listens"}`)
		if got := p.text("send-status"); got != "503 Service Unavailable" {
			t.Errorf("send status %q", got)
		}
		if r := p.text("send-response"); !strings.Contains(r, "Retry-After: 1") {
			t.Errorf("response panel lacks Retry-After: %s", r)
		}
		p.checkClean()
		p.screenshot("console-no-listener.png")
	})
}
