package main

import (
	"bufio"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"io"
	"math/big"
	"net"
	"time"
)

// serveTLSBackend is the TLS program of the shared-port scenario: it
// holds a throwaway certificate for every name (made at start, as the app
// behind an SNI-routed port holds its own), and answers "PING\n" with
// "PONG\n" on each connection, then closes it.
func serveTLSBackend(addr string) error {
	cert, err := throwawayCert()
	if err != nil {
		return err
	}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return err
	}
	tl := tls.NewListener(ln, &tls.Config{Certificates: []tls.Certificate{cert}})
	for {
		c, err := tl.Accept()
		if err != nil {
			return err
		}
		go serveTLSConn(c)
	}
}

func serveTLSConn(c net.Conn) {
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(30 * time.Second))
	line, err := bufio.NewReader(c).ReadString('\n')
	if err == nil && line == "PING\n" {
		_, _ = io.WriteString(c, "PONG\n")
	}
}

// throwawayCert makes a self-signed ECDSA certificate valid for any name
// (the clients do not verify it: what is measured is the routing).
func throwawayCert() (tls.Certificate, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return tls.Certificate{}, err
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1),
		Subject:      pkix.Name{CommonName: "dynapm bench"},
		DNSNames:     []string{"*.bench.test"},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(24 * time.Hour),
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return tls.Certificate{}, err
	}
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key}, nil
}

// tlsPing makes one TLS connection to addr naming server, asks PING and
// waits for PONG.
func tlsPing(addr, server string, deadline time.Time) error {
	d := &net.Dialer{Deadline: deadline, KeepAlive: -1}
	c, err := tls.DialWithDialer(d, "tcp", addr, &tls.Config{ServerName: server, InsecureSkipVerify: true})
	if err != nil {
		return err
	}
	defer c.Close()
	_ = c.SetDeadline(deadline)
	if _, err := io.WriteString(c, "PING\n"); err != nil {
		return err
	}
	line, err := bufio.NewReader(c).ReadString('\n')
	if err != nil {
		return err
	}
	if line != "PONG\n" {
		return io.ErrUnexpectedEOF
	}
	return nil
}
