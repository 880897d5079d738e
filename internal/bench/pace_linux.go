//go:build linux

package bench

import (
	"context"
	"os"
	"time"

	"golang.org/x/sys/unix"
)

// newPacer is a periodic timerfd read through the runtime's poller. A Go
// timer would do, but the runtime's poller sleeps in whole milliseconds
// (epoll_wait's timeout), so an open loop paced by timers hands out its
// arrivals in bursts up to a millisecond or two late, and that lateness
// would count as the server's latency. A timerfd's expiry wakes the
// poller on the kernel's high-resolution clock instead, and no thread is
// held while it waits. Armed after the open loop's start, it expires a
// few microseconds after each arrival is due.
func newPacer(ctx context.Context, interval time.Duration) pacer {
	fd, err := unix.TimerfdCreate(unix.CLOCK_MONOTONIC, unix.TFD_NONBLOCK|unix.TFD_CLOEXEC)
	if err != nil {
		return newTimerPacer(ctx)
	}
	ts := unix.NsecToTimespec(int64(interval))
	if err := unix.TimerfdSettime(fd, 0, &unix.ItimerSpec{Interval: ts, Value: ts}, nil); err != nil {
		unix.Close(fd)
		return newTimerPacer(ctx)
	}
	p := &timerfdPacer{f: os.NewFile(uintptr(fd), "timerfd")}
	// ctx's end ends every wait from then on.
	p.unwatch = context.AfterFunc(ctx, func() { p.f.SetReadDeadline(time.Now()) })
	return p
}

type timerfdPacer struct {
	f       *os.File
	unwatch func() bool
	buf     [8]byte // the expirations since the last read
}

func (p *timerfdPacer) wait(time.Time) {
	p.f.Read(p.buf[:]) // an error (the deadline) ends the wait too
}

func (p *timerfdPacer) stop() {
	p.unwatch()
	p.f.Close()
}
