package bench

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"sync/atomic"
	"time"
)

// rawPoster posts one fixed request per operation over a keep-alive
// connection per worker, written with one write and read with
// http.ReadResponse on the worker's own goroutine. It is the separate-
// process section's load generator: net/http's client hands every request
// to two more goroutines (persistConn's read and write loops), and on a
// 2-core machine that the measured server shares, the generator's own CPU
// and wake-ups would inflate the latency and cap the rate it measures
// (the figures came from a lean external generator).
type rawPoster struct {
	addr  string
	req   []byte // the whole request: head and body
	spec  LoadSpec
	msgs  *atomic.Int64
	conns []rawConn // one per worker
}

type rawConn struct {
	c   net.Conn
	br  *bufio.Reader
	buf bytes.Buffer // the response body
}

// newRawPoster prepares spec's request for workers workers.
func newRawPoster(spec LoadSpec, workers int, msgs *atomic.Int64) (*rawPoster, error) {
	u, err := url.Parse(spec.URL)
	if err != nil {
		return nil, err
	}
	if u.Scheme != "http" {
		return nil, fmt.Errorf("bench: raw poster needs an http:// URL, got %q", spec.URL)
	}
	head := fmt.Sprintf("POST %s HTTP/1.1\r\nHost: %s\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n",
		u.RequestURI(), u.Host, len(spec.Body))
	return &rawPoster{addr: u.Host, req: append([]byte(head), spec.Body...), spec: spec, msgs: msgs,
		conns: make([]rawConn, workers)}, nil
}

// do is a doFunc: one POST on worker w's connection (dialled if needed),
// its status checked, the messages it carried counted.
func (p *rawPoster) do(_ context.Context, w int) error {
	rc := &p.conns[w]
	if rc.c == nil {
		c, err := net.DialTimeout("tcp", p.addr, 10*time.Second)
		if err != nil {
			return err
		}
		rc.c, rc.br = c, bufio.NewReaderSize(c, 16<<10)
	}
	resp, err := rc.roundTrip(p.req)
	if err != nil {
		rc.close()
		return err
	}
	if resp.Close {
		rc.close()
	}
	return p.account(resp.StatusCode, rc.buf.Bytes())
}

// account checks a response's status and counts the messages it
// accepted: one, or a batch answer's "sent" items. A status other than
// the spec's is a *statusError with the problem's code.
func (p *rawPoster) account(status int, body []byte) error {
	if status != p.spec.Want {
		var pr struct {
			Code string `json:"code"`
		}
		_ = json.Unmarshal(body, &pr)
		return &statusError{status: status, code: pr.Code}
	}
	if p.spec.Batch {
		p.msgs.Add(int64(bytes.Count(body, []byte(`"status":"sent"`))))
	} else {
		p.msgs.Add(1)
	}
	return nil
}

// roundTrip writes req and reads the response, its body into rc.buf.
func (rc *rawConn) roundTrip(req []byte) (*http.Response, error) {
	_ = rc.c.SetDeadline(time.Now().Add(30 * time.Second))
	if _, err := rc.c.Write(req); err != nil {
		return nil, err
	}
	resp, err := http.ReadResponse(rc.br, nil)
	if err != nil {
		return nil, err
	}
	rc.buf.Reset()
	_, err = rc.buf.ReadFrom(io.LimitReader(resp.Body, 1<<20))
	resp.Body.Close()
	return resp, err
}

func (rc *rawConn) close() {
	if rc.c != nil {
		rc.c.Close()
	}
	rc.c, rc.br = nil, nil
}

// closeAll closes every worker's connection.
func (p *rawPoster) closeAll() {
	for i := range p.conns {
		p.conns[i].close()
	}
}
