package relay

import (
	"net"
	"testing"
)

// TestLossLogCountsUnacknowledgedFrames checks the count forceClose
// reports against a brute-force count over every frame end.
func TestLossLogCountsUnacknowledgedFrames(t *testing.T) {
	var l lossLog
	var ends []uint64
	end := uint64(0)
	for i := range 300 {
		end += uint64(6 + i%50) // frames of varied sizes
		l.record(end)
		ends = append(ends, end)
		if i%37 == 0 {
			// The relay acknowledged everything up to an older frame.
			acked := ends[len(ends)/2]
			l.acked(acked)
			ends = ends[len(ends)/2+1:]
		}
	}
	for _, acked := range []uint64{0, ends[0] - 1, ends[0], ends[len(ends)/2], end - 1, end} {
		want := 0
		for _, e := range ends {
			if e > acked {
				want++
			}
		}
		if got := l.unacked(acked); got != want {
			t.Errorf("unacked(%d) = %d, want %d", acked, got, want)
		}
	}
	if l.n != len(ends) {
		t.Errorf("remembers %d frames, want the %d unacknowledged", l.n, len(ends))
	}
}

// TestLossLogOverflowIsAnUpperBound checks that with more unacknowledged
// frames than the ring holds, the count still covers every one of them.
func TestLossLogOverflowIsAnUpperBound(t *testing.T) {
	var l lossLog
	const n = 3 * lossRing
	for i := range n {
		l.record(uint64(10 * (i + 1)))
	}
	if len(l.ring) != lossRing {
		t.Fatalf("ring of %d, want it capped at %d", len(l.ring), lossRing)
	}
	if got := l.unacked(0); got != n {
		t.Errorf("nothing acknowledged: unacked = %d, want all %d", got, n)
	}
	// Acknowledged up to the middle of the remembered frames: exact.
	acked := uint64(10 * (n - lossRing/2))
	if got, want := l.unacked(acked), lossRing/2; got != want {
		t.Errorf("unacked(%d) = %d, want %d", acked, got, want)
	}
	// Acknowledged within the forgotten frames: an upper bound.
	if got, want := l.unacked(10*lossRing), n-lossRing; got < want {
		t.Errorf("unacked = %d, want at least %d", got, want)
	}
	l.acked(uint64(10 * (n - 1)))
	if got := l.unacked(0); got != 1 {
		t.Errorf("after an acknowledgement past the forgotten frames: unacked(0) = %d, want 1 (forgotten ones were older)", got)
	}
}

// TestLossLogReleasedWhenAcknowledged checks that an idle connection keeps
// no ring: everything acknowledged frees it, and recording grows it again.
func TestLossLogReleasedWhenAcknowledged(t *testing.T) {
	var l lossLog
	for i := range 100 {
		l.record(uint64(i + 1))
	}
	l.acked(100)
	if l.ring != nil || l.n != 0 || l.forgot != 0 {
		t.Errorf("after acknowledging everything: %+v, want the zero lossLog", l)
	}
	l.record(120)
	if got := l.unacked(100); got != 1 {
		t.Errorf("unacked after reuse = %d, want 1", got)
	}
}

// TestTapReleasesLargeCorkBuffer checks that an idle connection does not
// keep the cork buffer of its largest batch.
func TestTapReleasesLargeCorkBuffer(t *testing.T) {
	a, b := net.Pipe()
	defer a.Close()
	defer b.Close()
	go func() {
		buf := make([]byte, 32<<10)
		for {
			if _, err := b.Read(buf); err != nil {
				return
			}
		}
	}()
	tc := newTapConn(a)
	tc.Cork()
	for range 16 {
		tc.Write(make([]byte, 4<<10))
	}
	if _, err := tc.flush(); err != nil {
		t.Fatal(err)
	}
	if cap(tc.buf) < 64<<10 {
		t.Fatalf("cork buffer of %d bytes after a 64 KiB batch; the test expects it kept until idle", cap(tc.buf))
	}
	tc.shrink(minCorkBuf)
	if tc.buf != nil {
		t.Errorf("cork buffer of %d bytes kept after release", cap(tc.buf))
	}
	tc.Cork()
	tc.Write([]byte("small"))
	if n, err := tc.flush(); n != 5 || err != nil {
		t.Errorf("flush after release: %d, %v", n, err)
	}
	tc.shrink(minCorkBuf)
	if tc.buf == nil {
		t.Error("a small cork buffer was released; it is kept")
	}
}
