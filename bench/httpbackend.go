package main

import (
	"bytes"
	"net"
)

// The tiny HTTP backend's answers: a fixed two-byte body, kept alive or
// closed as the request asks.
var (
	respKeepAlive = []byte("HTTP/1.1 200 OK\r\nContent-Length: 2\r\nContent-Type: text/plain\r\n\r\nok")
	respClose     = []byte("HTTP/1.1 200 OK\r\nContent-Length: 2\r\nContent-Type: text/plain\r\nConnection: close\r\n\r\nok")
	headerEnd     = []byte("\r\n\r\n")
	connClose     = []byte("onnection: close")
	connCloseCap  = []byte("onnection: Close")
)

// serveHTTPBackend is a minimal HTTP/1.1 responder for the warm-path
// scenarios: it answers every request (bodies are not expected) with "ok",
// as fast as a goroutine per connection allows, so that the measurements
// are dominated by the proxy, not by an HTTP library. Handed its socket
// (handoff: socket), it accepts from that one.
func serveHTTPBackend(addr string) error {
	ln, err := backendListener(addr)
	if err != nil {
		return err
	}
	for {
		c, err := ln.Accept()
		if err != nil {
			return err
		}
		go serveHTTPConn(c)
	}
}

func serveHTTPConn(c net.Conn) {
	defer c.Close()
	buf := make([]byte, 8192)
	out := make([]byte, 0, 4096)
	n := 0
	for {
		m, err := c.Read(buf[n:])
		if m == 0 && err != nil {
			return
		}
		n += m
		// Answer every complete request in the buffer (pipelining
		// included) with one write.
		out, closing, used := answer(buf[:n], out[:0])
		if len(out) > 0 {
			if _, err := c.Write(out); err != nil {
				return
			}
		}
		if closing {
			return
		}
		n = copy(buf, buf[used:n])
		if n == len(buf) {
			return // a request head larger than the buffer: not ours
		}
	}
}

// answer appends a response for every complete request head in in, and
// reports whether one asked to close and how many bytes were consumed.
func answer(in, out []byte) ([]byte, bool, int) {
	used := 0
	for {
		i := bytes.Index(in[used:], headerEnd)
		if i < 0 {
			return out, false, used
		}
		head := in[used : used+i]
		used += i + len(headerEnd)
		if bytes.Contains(head, connClose) || bytes.Contains(head, connCloseCap) {
			return append(out, respClose...), true, used
		}
		out = append(out, respKeepAlive...)
	}
}
