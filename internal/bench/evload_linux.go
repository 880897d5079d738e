//go:build linux

package bench

import (
	"context"
	"errors"
	"fmt"
	"net"
	"runtime"
	"time"

	"golang.org/x/sys/unix"
)

// runOpenLoop runs the load child's open loop on Linux with evLoad: one OS
// thread drives every connection and the pacing clock through one epoll
// set, as wrk2 does. The goroutine-per-worker openLoop costs about as much
// CPU per request as the bare server it measures (a channel hand-off, a
// netpoll wake-up and a thread wake-up per arrival: 0.67 of this machine's
// 2 cores at 6,700 requests/s), and on a 2-core machine the measured
// server waited for that CPU, which counted as its latency.
func runOpenLoop(ctx context.Context, spec LoadSpec, p *rawPoster, mark func()) (loadResult, error) {
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	ev, err := newEvLoad(p, spec.Conc)
	if err != nil {
		return loadResult{}, err
	}
	defer ev.close()
	if _, err := ev.run(ctx, spec.Rate, spec.Warmup); err != nil {
		return loadResult{}, err
	}
	mark()
	return ev.run(ctx, spec.Rate, spec.Window)
}

// evLoad is an open-loop load generator over non-blocking sockets and
// epoll, on the calling thread. Each arrival goes out on an idle
// connection (at most conns of them, dialled as needed) or, if none is
// idle, waits in a queue and counts as late once it is over a millisecond
// behind.
type evLoad struct {
	p     *rawPoster
	sa    unix.Sockaddr
	ep    int         // epoll set: the timerfd (data 0) and the connections (data index+1)
	tfd   int         // the pacing clock, re-armed by each run
	conns []*evConn   // index = epoll data - 1
	idle  []*evConn   // connected and not busy
	queue []time.Time // when the arrivals waiting for an idle connection were due
	max   int         // connections allowed
}

// evConn is one keep-alive connection and the request it carries.
type evConn struct {
	i          int
	fd         int // -1 when closed
	buf        []byte
	due, began time.Time
	busy       bool
}

func newEvLoad(p *rawPoster, conns int) (*evLoad, error) {
	ta, err := net.ResolveTCPAddr("tcp", p.addr)
	if err != nil {
		return nil, err
	}
	var sa unix.Sockaddr
	if ip4 := ta.IP.To4(); ip4 != nil {
		sa4 := &unix.SockaddrInet4{Port: ta.Port}
		copy(sa4.Addr[:], ip4)
		sa = sa4
	} else {
		sa6 := &unix.SockaddrInet6{Port: ta.Port}
		copy(sa6.Addr[:], ta.IP.To16())
		sa = sa6
	}
	ep, err := unix.EpollCreate1(unix.EPOLL_CLOEXEC)
	if err != nil {
		return nil, fmt.Errorf("bench: epoll: %w", err)
	}
	tfd, err := unix.TimerfdCreate(unix.CLOCK_MONOTONIC, unix.TFD_NONBLOCK|unix.TFD_CLOEXEC)
	if err != nil {
		unix.Close(ep)
		return nil, fmt.Errorf("bench: timerfd: %w", err)
	}
	ev := &evLoad{p: p, sa: sa, ep: ep, tfd: tfd, max: conns}
	if err := unix.EpollCtl(ep, unix.EPOLL_CTL_ADD, tfd, &unix.EpollEvent{Events: unix.EPOLLIN, Fd: 0}); err != nil {
		ev.close()
		return nil, fmt.Errorf("bench: epoll: %w", err)
	}
	return ev, nil
}

// run offers rate arrivals per second for window and returns once every
// arrival is answered (or failed), or ctx is done.
func (ev *evLoad) run(ctx context.Context, rate float64, window time.Duration) (loadResult, error) {
	n := int(rate * window.Seconds())
	interval := time.Duration(float64(time.Second) / rate)
	start := time.Now()
	res := loadResult{Started: start, Offered: rate, Errors: map[string]int64{}}
	ts := unix.NsecToTimespec(int64(interval))
	if err := unix.TimerfdSettime(ev.tfd, 0, &unix.ItimerSpec{Interval: ts, Value: ts}, nil); err != nil {
		return res, fmt.Errorf("bench: timerfd: %w", err)
	}
	defer unix.TimerfdSettime(ev.tfd, 0, &unix.ItimerSpec{}, nil)
	events := make([]unix.EpollEvent, 256)
	var tick [8]byte
	next, inflight := 0, 0
	for (next < n || inflight > 0) && ctx.Err() == nil {
		k, err := unix.EpollWait(ev.ep, events, 100)
		if err != nil && !errors.Is(err, unix.EINTR) {
			return res, fmt.Errorf("bench: epoll_wait: %w", err)
		}
		now := time.Now()
		for _, e := range events[:max(k, 0)] {
			if e.Fd == 0 {
				unix.Read(ev.tfd, tick[:])
				for ; next < n; next++ {
					due := start.Add(time.Duration(next+1) * interval)
					if due.After(now) {
						break
					}
					inflight++
					ev.queue = append(ev.queue, due)
				}
				continue
			}
			c := ev.conns[e.Fd-1]
			if done, err := ev.read(c); done {
				inflight--
				ev.record(&res, c, now, err)
			}
		}
		inflight -= ev.dispatch(&res, now)
	}
	res.Window = time.Since(start)
	res.Measured = int64(len(res.Latencies))
	res.OK = res.Measured
	return res, ctx.Err()
}

// dispatch sends queued arrivals on idle connections, dialling new ones
// up to the limit. It returns how many arrivals failed to go out.
func (ev *evLoad) dispatch(res *loadResult, now time.Time) (failed int) {
	for len(ev.queue) > 0 {
		c, err := ev.idleConn()
		if c == nil && err == nil {
			return failed
		}
		due := ev.queue[0]
		ev.queue = ev.queue[1:]
		if err != nil { // the dial failed: so does the arrival
			failed++
			res.Errors[errKind(err)]++
			continue
		}
		c.due, c.began, c.busy, c.buf = due, time.Now(), true, c.buf[:0]
		if c.began.Sub(due) > time.Millisecond {
			res.Late++
		}
		if w, err := unix.Write(c.fd, ev.p.req); err != nil || w != len(ev.p.req) {
			if err == nil {
				err = errors.New("short write")
			}
			failed++
			ev.closeConn(c)
			ev.record(res, c, now, err)
		}
	}
	return failed
}

// idleConn returns an idle connection, dialling one if none is idle and
// the limit allows; nil and no error if it must wait.
func (ev *evLoad) idleConn() (*evConn, error) {
	if k := len(ev.idle); k > 0 {
		c := ev.idle[k-1]
		ev.idle = ev.idle[:k-1]
		return c, nil
	}
	var c *evConn
	for _, old := range ev.conns {
		if old.fd < 0 {
			c = old
			break
		}
	}
	if c == nil {
		if len(ev.conns) >= ev.max {
			return nil, nil
		}
		c = &evConn{i: len(ev.conns), fd: -1, buf: make([]byte, 0, 16<<10)}
		ev.conns = append(ev.conns, c)
	}
	if err := ev.dial(c); err != nil {
		return nil, err
	}
	return c, nil
}

// dial connects c (a blocking connect: loopback answers at once) and adds
// it to the epoll set.
func (ev *evLoad) dial(c *evConn) error {
	fd, err := unix.Socket(socketFamily(ev.sa), unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return err
	}
	if err := unix.Connect(fd, ev.sa); err != nil {
		unix.Close(fd)
		return err
	}
	unix.SetsockoptInt(fd, unix.IPPROTO_TCP, unix.TCP_NODELAY, 1)
	if err := unix.SetNonblock(fd, true); err != nil {
		unix.Close(fd)
		return err
	}
	if err := unix.EpollCtl(ev.ep, unix.EPOLL_CTL_ADD, fd, &unix.EpollEvent{Events: unix.EPOLLIN, Fd: int32(c.i + 1)}); err != nil {
		unix.Close(fd)
		return err
	}
	c.fd = fd
	return nil
}

func socketFamily(sa unix.Sockaddr) int {
	if _, ok := sa.(*unix.SockaddrInet4); ok {
		return unix.AF_INET
	}
	return unix.AF_INET6
}

// read reads what c's socket holds. done is true when c's request ended:
// its whole response is in (err reports its status), or the connection
// failed (err says how).
func (ev *evLoad) read(c *evConn) (done bool, err error) {
	for c.fd >= 0 {
		if len(c.buf) == cap(c.buf) {
			return ev.fail(c, errors.New("response over 16 KiB"))
		}
		k, err := unix.Read(c.fd, c.buf[len(c.buf):cap(c.buf)])
		switch {
		case errors.Is(err, unix.EAGAIN):
			return false, nil
		case errors.Is(err, unix.EINTR):
			continue
		case err != nil:
			return ev.fail(c, err)
		case k == 0:
			return ev.fail(c, errors.New("connection closed by the server"))
		}
		c.buf = c.buf[:len(c.buf)+k]
		if !c.busy {
			return ev.fail(c, errors.New("bytes from the server with no request out"))
		}
		h, err := parseResponseHead(c.buf)
		switch {
		case err != nil:
			return ev.fail(c, err)
		case h.headLen == 0 || len(c.buf) < h.headLen+h.bodyLen:
			continue // read on until EAGAIN
		case len(c.buf) > h.headLen+h.bodyLen:
			return ev.fail(c, errors.New("bytes after the response"))
		}
		err = ev.p.account(h.status, c.buf[h.headLen:])
		if h.close {
			ev.closeConn(c)
		}
		return true, err
	}
	return false, nil // closed earlier in this round of events
}

// fail closes c; its request, if any, failed with err.
func (ev *evLoad) fail(c *evConn, err error) (bool, error) {
	busy := c.busy
	ev.closeConn(c)
	return busy, err
}

// record ends c's request at now with err, and makes c idle again if it is
// still connected.
func (ev *evLoad) record(res *loadResult, c *evConn, now time.Time, err error) {
	c.busy = false
	if c.fd >= 0 {
		ev.idle = append(ev.idle, c)
	}
	if err != nil {
		res.Errors[errKind(err)]++
		return
	}
	res.Latencies = append(res.Latencies, now.Sub(c.due))
	res.Service = append(res.Service, now.Sub(c.began))
}

func (ev *evLoad) closeConn(c *evConn) {
	if c.fd < 0 {
		return
	}
	unix.EpollCtl(ev.ep, unix.EPOLL_CTL_DEL, c.fd, nil)
	unix.Close(c.fd)
	c.fd = -1
	for i, ic := range ev.idle {
		if ic == c {
			ev.idle = append(ev.idle[:i], ev.idle[i+1:]...)
			break
		}
	}
}

func (ev *evLoad) close() {
	for _, c := range ev.conns {
		ev.closeConn(c)
	}
	unix.Close(ev.tfd)
	unix.Close(ev.ep)
}
