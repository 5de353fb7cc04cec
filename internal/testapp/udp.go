package main

import (
	"flag"
	"fmt"
	"net"
	"os"
	"syscall"
	"time"
)

// UDP modes: udp-echo sends every datagram back to its sender; tcp-udp-echo
// echoes on TCP and UDP at once, on the same port.
var waitFile = flag.String("wait-file", "", "udp modes: bind only once this file exists (a start the test ends)")

// udpRecvBuffer is forced where the kernel lets us (root): the tests send
// bursts that a default buffer would drop on the loopback.
const udpRecvBuffer = 8 << 20

// runUDP serves the UDP modes; ok is false for any other mode.
func runUDP(c config, addr string) (ok bool, err error) {
	if c.mode != "udp-echo" && c.mode != "tcp-udp-echo" {
		return false, nil
	}
	if *waitFile != "" {
		for {
			if _, err := os.Stat(*waitFile); err == nil {
				break
			}
			time.Sleep(time.Millisecond)
		}
	}
	pc, err := net.ListenPacket("udp", addr)
	if err != nil {
		return true, err
	}
	conn := pc.(*net.UDPConn)
	if rc, err := conn.SyscallConn(); err == nil {
		rc.Control(func(fd uintptr) {
			if syscall.SetsockoptInt(int(fd), syscall.SOL_SOCKET, syscall.SO_RCVBUFFORCE, udpRecvBuffer) != nil {
				syscall.SetsockoptInt(int(fd), syscall.SOL_SOCKET, syscall.SO_RCVBUF, udpRecvBuffer)
			}
		})
	}
	fmt.Printf("testapp: listening on %s/udp mode %s\n", conn.LocalAddr(), c.mode)
	if c.mode == "tcp-udp-echo" {
		ln, err := listen(addr, c.backlog)
		if err != nil {
			return true, err
		}
		go serveEcho(ln, 0)
	}
	if c.pidfile != "" {
		if err := writePid(c.pidfile, os.Getpid()); err != nil {
			return true, err
		}
	}
	buf := make([]byte, 1<<16)
	for {
		n, from, err := conn.ReadFromUDPAddrPort(buf)
		if err != nil {
			return true, err
		}
		if _, err := conn.WriteToUDPAddrPort(buf[:n], from); err != nil {
			fmt.Fprintf(os.Stderr, "testapp: udp reply to %s: %v\n", from, err)
		}
	}
}
