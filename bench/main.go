// Command bench measures DynaPM against a direct connection to the same
// backend, in one run on this machine, and prints a report:
//
//   - bulk: throughput of one large download through DynaPM vs direct;
//   - cold wake: connect-to-first-byte through DynaPM for a stopped app,
//     minus the same program's own start-to-first-byte, measured alike.
//
// It builds the dynapm binary, writes an apps.d in a temporary directory
// and uses its own executable as the backend program (-backend), so that
// client, proxy and backend are three processes, as in real use. All
// traffic stays on 127.0.0.1 and every loop is bounded.
//
// Usage: go run ./bench [-bulk 1GiB] [-runs 5] [-wakes 20]
package main

import (
	"flag"
	"fmt"
	"os"
)

func main() {
	backend := flag.String("backend", "", "internal: run as the backend program listening on this address")
	pidfile := flag.String("pidfile", "", "internal: backend writes its pid here once listening")
	bulkMiB := flag.Int("bulk-mib", 1024, "MiB per bulk transfer")
	runs := flag.Int("runs", 5, "bulk runs per path (the median is reported)")
	wakes := flag.Int("wakes", 20, "cold wakes (the median overhead is reported)")
	flag.Parse()

	if *backend != "" {
		err := serveBackend(*backend, *pidfile)
		fmt.Fprintln(os.Stderr, "bench backend:", err)
		os.Exit(1)
	}
	if err := run(int64(*bulkMiB)<<20, *runs, *wakes); err != nil {
		fmt.Fprintln(os.Stderr, "bench:", err)
		os.Exit(1)
	}
}
