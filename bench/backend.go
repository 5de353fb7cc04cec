package main

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"os"
	"strconv"
	"strings"
)

// serveBackend is the program the benchmark measures behind DynaPM. Each
// connection sends one line: "PING" is answered with "PONG\n" (the cold
// wake's first byte); "BULK n" is answered with n bytes (the download).
func serveBackend(addr, pidfile string) error {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return err
	}
	if pidfile != "" {
		if err := os.WriteFile(pidfile, []byte(strconv.Itoa(os.Getpid())), 0o644); err != nil {
			return err
		}
	}
	for {
		c, err := ln.Accept()
		if err != nil {
			return err
		}
		go serveBackendConn(c)
	}
}

var zeros = make([]byte, 256<<10)

func serveBackendConn(c net.Conn) {
	defer c.Close()
	line, err := bufio.NewReader(c).ReadString('\n')
	if err != nil {
		return // a readiness probe: connect and close
	}
	switch fields := strings.Fields(line); {
	case len(fields) == 1 && fields[0] == "PING":
		_, _ = io.WriteString(c, "PONG\n")
	case len(fields) == 2 && fields[0] == "BULK":
		n, _ := strconv.ParseInt(fields[1], 10, 64)
		for n > 0 {
			chunk := int64(len(zeros))
			if n < chunk {
				chunk = n
			}
			w, err := c.Write(zeros[:chunk])
			if err != nil {
				return
			}
			n -= int64(w)
		}
	default:
		fmt.Fprintf(c, "ERR unknown request %q\n", line)
	}
}
