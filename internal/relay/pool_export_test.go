package relay

// Tapped reports how many ready connections have a tap that can read the
// socket's unacknowledged bytes (all of them on Linux with the default
// transport).
func (p *Pool) Tapped() int {
	n := 0
	for _, c := range *p.healthy.Load() {
		if c.tap != nil && c.tap.outq != nil {
			if _, ok := c.tap.unsent(); ok {
				n++
			}
		}
	}
	return n
}
