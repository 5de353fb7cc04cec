package l4

import "sync"

// Bounds of the datagrams queued for an app while it wakes: Route's
// MaxPending datagrams (DefaultUDPMaxPending when zero) and UDPQueueBytes
// of payload, across all of the app's flows and UDP addresses. The oldest
// are kept: a datagram that finds the queue full is dropped and counted.
const (
	DefaultUDPMaxPending = 1024
	UDPQueueBytes        = 4 << 20
)

// udpBudget is what one app has queued.
type udpBudget struct {
	datagrams, bytes int
}

// udpQueues keeps each app's budget.
type udpQueues struct {
	mu   sync.Mutex
	apps map[string]*udpBudget
}

// take books a datagram of n bytes for app; false if the queue is full.
func (q *udpQueues) take(app string, n, maxPending int) bool {
	if maxPending <= 0 {
		maxPending = DefaultUDPMaxPending
	}
	q.mu.Lock()
	defer q.mu.Unlock()
	if q.apps == nil {
		q.apps = make(map[string]*udpBudget)
	}
	b := q.apps[app]
	if b == nil {
		b = &udpBudget{}
		q.apps[app] = b
	}
	if b.datagrams+1 > maxPending || b.bytes+n > UDPQueueBytes {
		return false
	}
	b.datagrams++
	b.bytes += n
	return true
}

// give returns what take booked for datagrams of app, once delivered or
// dropped.
func (q *udpQueues) give(app string, datagrams [][]byte) {
	n := 0
	for _, d := range datagrams {
		n += len(d)
	}
	q.mu.Lock()
	defer q.mu.Unlock()
	if b := q.apps[app]; b != nil {
		b.datagrams -= len(datagrams)
		b.bytes -= n
		if b.datagrams == 0 {
			delete(q.apps, app)
		}
	}
}
