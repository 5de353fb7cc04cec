package main

import (
	"context"
	"fmt"
	"sync"
	"time"
)

// The names the shared-port scenario routes by.
const (
	sharedName      = "a.bench.test"
	sharedOtherName = "b.bench.test"
)

// sharedAddrs are the addresses of the shared-port scenario: per target
// ("direct", "own port", "shared"), the plain HTTP and the TLS address.
type sharedAddrs struct {
	http, tls map[string]string
}

const (
	ownPort    = "own port"
	sharedPort = "shared"
)

// sharedApps returns the apps of the shared-port scenario: an HTTP app
// routed by Host and a TLS app routed by SNI, each on an address shared with
// a second app, and a TLS app on a port of its own (the plain HTTP app on
// its own port is the warm path's). Every app runs a backend of its own.
func (b *bench) sharedApps() []app {
	b.shared = sharedAddrs{
		http: map[string]string{direct: b.httpAddr[direct], ownPort: b.httpAddr[dynapm], sharedPort: freeAddr()},
		tls:  map[string]string{direct: freeAddr(), ownPort: freeAddr(), sharedPort: freeAddr()},
	}
	httpBackend := func(addr string) []string { return []string{b.backendBin, "-backend-http", addr} }
	tlsBackend := func(addr string) []string { return []string{b.backendBin, "-backend-tls", addr} }
	persistent := func(match string) string {
		return "mode: persistent\nmatch: " + match + "\n"
	}
	hostA, hostB, sniA, sniB := freeAddr(), freeAddr(), freeAddr(), freeAddr()
	return []app{
		{name: "host-a", listen: b.shared.http[sharedPort], upstream: hostA, command: httpBackend(hostA),
			extra: persistent(fmt.Sprintf("{host: [%q]}", sharedName))},
		{name: "host-b", listen: b.shared.http[sharedPort], upstream: hostB, command: httpBackend(hostB),
			extra: persistent(fmt.Sprintf("{host: [%q]}", sharedOtherName))},
		// The direct TLS column is tls-own's backend: the same program as
		// sni-a's.
		{name: "tls-own", listen: b.shared.tls[ownPort], upstream: b.shared.tls[direct], command: tlsBackend(b.shared.tls[direct]),
			extra: "mode: persistent\n"},
		{name: "sni-a", listen: b.shared.tls[sharedPort], upstream: sniA, command: tlsBackend(sniA),
			extra: persistent(fmt.Sprintf("{sni: [%q]}", sharedName))},
		{name: "sni-b", listen: b.shared.tls[sharedPort], upstream: sniB, command: tlsBackend(sniB),
			extra: persistent(fmt.Sprintf("{sni: [%q]}", sharedOtherName))},
	}
}

// sharedTargets are the shared-port scenario's targets, in report order.
var sharedTargets = []string{direct, ownPort, sharedPort}

// sharedScenario measures what routing by name costs per connection: new
// HTTP connections (wrk, Connection: close) to an app on a port of its own
// and to one routed by Host on a shared port, and new TLS connections
// (handshake, one request, close; a Go client) to an app on its own port
// and to one routed by SNI, each against the direct connection, the targets
// alternating per repetition.
func (b *bench) sharedScenario(ctx context.Context) error {
	type result struct{ rate, cpu []float64 } // cpu: µs of proxy CPU per connection
	hostRes := map[string]*result{}
	tlsRes := map[string]*result{}
	for _, t := range sharedTargets {
		hostRes[t], tlsRes[t] = &result{}, &result{}
	}
	pid := func(t string) int {
		if t == direct {
			return 0
		}
		return b.daemon.pid()
	}
	load := loadNewConn
	load.host = sharedName
	for rep := 0; rep < b.cfg.runs; rep++ {
		for _, t := range order(sharedTargets, rep) {
			if b.hasWrk {
				before := usage(pid(t))
				r, err := runWrk(ctx, load, "http://"+b.shared.http[t]+"/", b.cfg.dur)
				if err != nil {
					return fmt.Errorf("host-routed connections through %s: %w", t, err)
				}
				u := usage(pid(t)).sub(before)
				hostRes[t].rate = append(hostRes[t].rate, r.rate)
				hostRes[t].cpu = append(hostRes[t].cpu, u.cpu.Seconds()/r.requests*1e6)
				progress("shared: http %-8s rep %d: %8.0f conn/s  cpu %5.1fµs/conn  errors %d", t, rep+1, r.rate, u.cpu.Seconds()/r.requests*1e6, r.errors)
			}
			before := usage(pid(t))
			n, errs, elapsed := tlsLoad(b.shared.tls[t], sharedName, b.cfg.sharedClients, b.cfg.dur)
			if n == 0 {
				return fmt.Errorf("TLS connections through %s: none served (%d errors)", t, errs)
			}
			u := usage(pid(t)).sub(before)
			rate := float64(n) / elapsed.Seconds()
			tlsRes[t].rate = append(tlsRes[t].rate, rate)
			tlsRes[t].cpu = append(tlsRes[t].cpu, u.cpu.Seconds()/float64(n)*1e6)
			progress("shared: tls  %-8s rep %d: %8.0f conn/s  cpu %5.1fµs/conn  errors %d", t, rep+1, rate, u.cpu.Seconds()/float64(n)*1e6, errs)
			if errs > 0 {
				b.rep.note("shared: %d TLS connections through %s failed in repetition %d", errs, t, rep+1)
			}
		}
	}
	add := func(scen string, res map[string]*result) {
		if len(res[direct].rate) == 0 {
			return
		}
		d, own, sh := median(res[direct].rate), median(res[ownPort].rate), median(res[sharedPort].rate)
		b.rep.facts = append(b.rep.facts,
			factRow{scen, "connections/s: direct / own port / shared port", fmt.Sprintf("%.0f / %.0f / %.0f", d, own, sh), ""},
			factRow{scen, "shared port / own port (rate)", fmt.Sprintf("%.2f", sh/own), "about 1"},
			factRow{scen, "proxy CPU per connection: own port / shared port", fmt.Sprintf("%.1f / %.1f µs", median(res[ownPort].cpu), median(res[sharedPort].cpu)), ""})
	}
	add("shared port, routed by HTTP Host (new connections, wrk -H 'Connection: close')", hostRes)
	add(fmt.Sprintf("shared port, routed by TLS SNI (handshake, one request, close; %d clients)", b.cfg.sharedClients), tlsRes)
	return nil
}

// tlsLoad runs clients goroutines making TLS connections to addr (naming
// server) back to back for d; it returns how many were served, how many
// failed and the time taken.
func tlsLoad(addr, server string, clients int, d time.Duration) (served, failed int, elapsed time.Duration) {
	var (
		wg sync.WaitGroup
		mu sync.Mutex
	)
	start := time.Now()
	end := start.Add(d)
	for range clients {
		wg.Go(func() {
			ok, bad := 0, 0
			for time.Now().Before(end) && bad < 100 {
				if err := tlsPing(addr, server, time.Now().Add(10*time.Second)); err != nil {
					bad++
					continue
				}
				ok++
			}
			mu.Lock()
			served += ok
			failed += bad
			mu.Unlock()
		})
	}
	wg.Wait()
	return served, failed, time.Since(start)
}
