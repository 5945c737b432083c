package rollup

// Rolling returns the number of counters taken from the queues whose rollup has not finished.
func (p *Pipeline) Rolling() int {
	n := 0
	for _, q := range p.queues {
		q.mu.Lock()
		n += len(q.rolling)
		q.mu.Unlock()
	}
	return n
}

// FillQueues makes the queues count as full, so the next hint for a counter not queued is
// dropped.
func (p *Pipeline) FillQueues() { p.addQueued(MaxQueuedCounters - p.queued.Load()) }
