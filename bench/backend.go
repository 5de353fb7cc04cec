package main

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/dynapm/dynapm/sdnotify"
)

// serveBackend is the program the benchmark measures behind DynaPM. Each
// connection sends one line: "PING" is answered with "PONG\n" (the cold
// wake's first byte); "BULK n" is answered with n bytes (the download).
func serveBackend(addr, pidfile, spawnlog string) error {
	ln, err := backendListener(addr)
	if err != nil {
		return err
	}
	if spawnlog != "" {
		if err := appendSpawn(spawnlog); err != nil {
			return err
		}
	}
	if pidfile != "" {
		if err := os.WriteFile(pidfile, []byte(strconv.Itoa(os.Getpid())), 0o644); err != nil {
			return err
		}
	}
	// Started with ready: {notify: true}, say so as sd_notify would (no
	// NOTIFY_SOCKET otherwise: nothing is sent).
	if err := sdnotify.FromEnv().Notify(sdnotify.Ready); err != nil {
		return err
	}
	for {
		c, err := ln.Accept()
		if err != nil {
			return err
		}
		go serveBackendConn(c)
	}
}

// backendListener listens on addr, or, when the backend was given its
// socket as systemd passes it (handoff: socket), takes that one: the
// same program measured both ways.
func backendListener(addr string) (net.Listener, error) {
	if os.Getenv("LISTEN_FDS") == "1" && os.Getenv("LISTEN_PID") == strconv.Itoa(os.Getpid()) {
		f := os.NewFile(3, "LISTEN_FD_3")
		defer f.Close()
		return net.FileListener(f)
	}
	return net.Listen("tcp", addr)
}

// appendSpawn records this process's start (pid and the time it began
// listening) as one line, so that the herd scenario can count spawns and
// measure from the moment the program was ready.
func appendSpawn(path string) error {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o644)
	if err != nil {
		return err
	}
	_, err = fmt.Fprintf(f, "%d %d\n", os.Getpid(), time.Now().UnixNano())
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	return err
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
