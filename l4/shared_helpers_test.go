package l4

import (
	"bufio"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/binary"
	"fmt"
	"io"
	"math/big"
	"net"
	"strings"
	"testing"
	"time"
)

// testCert makes a throwaway self-signed certificate for names and a pool
// that trusts it.
func testCert(t testing.TB, names ...string) (tls.Certificate, *x509.CertPool) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(1),
		Subject:               pkix.Name{CommonName: names[0]},
		DNSNames:              names,
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(time.Hour),
		IsCA:                  true,
		BasicConstraintsValid: true,
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageDigitalSignature,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	leaf, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AddCert(leaf)
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key, Leaf: leaf}, pool
}

// tlsNameThenEcho is a TLS server (the app holds the certificate, the
// proxy only passes bytes): after the handshake it tells the client which
// backend it is and which server name it saw, then echoes.
func tlsNameThenEcho(id string, cert tls.Certificate) func(*net.TCPConn) {
	return func(c *net.TCPConn) {
		c.SetDeadline(time.Now().Add(10 * time.Second))
		srv := tls.Server(c, &tls.Config{Certificates: []tls.Certificate{cert}})
		if err := srv.Handshake(); err != nil {
			return
		}
		fmt.Fprintf(srv, "%s|%s\n", id, srv.ConnectionState().ServerName)
		io.Copy(srv, srv)
	}
}

// tlsDial makes a TLS connection with serverName through addr and returns
// the backend's greeting line ("id|servername"). wrap, if not nil, wraps
// the TCP connection under TLS.
func tlsDial(t *testing.T, addr, serverName string, pool *x509.CertPool, wrap func(net.Conn) net.Conn) (*tls.Conn, string) {
	t.Helper()
	nc := dialTCP(t, addr)
	nc.SetDeadline(time.Now().Add(10 * time.Second))
	var under net.Conn = nc
	if wrap != nil {
		under = wrap(nc)
	}
	tc := tls.Client(under, &tls.Config{ServerName: serverName, RootCAs: pool})
	if err := tc.Handshake(); err != nil {
		t.Fatalf("TLS handshake for %s: %v", serverName, err)
	}
	if !tc.ConnectionState().HandshakeComplete {
		t.Fatalf("handshake for %s not complete", serverName)
	}
	line, err := bufio.NewReader(tc).ReadString('\n')
	if err != nil {
		t.Fatalf("reading greeting for %s: %v", serverName, err)
	}
	return tc, strings.TrimSuffix(line, "\n")
}

// httpRequest is a minimal HTTP/1.1 request for host.
func httpRequest(host string) string {
	return "GET / HTTP/1.1\r\nUser-Agent: test\r\nHost: " + host + "\r\n\r\n"
}

// dialHost connects to addr, sends an HTTP request for host and returns
// the name of the nameThenEcho backend it reached (n bytes), or the error.
func dialHost(t *testing.T, addr, host string, n int) (string, error) {
	t.Helper()
	c := dialTCP(t, addr)
	c.SetDeadline(time.Now().Add(10 * time.Second))
	if _, err := c.Write([]byte(httpRequest(host))); err != nil {
		return "", err
	}
	buf := make([]byte, n)
	if _, err := io.ReadFull(c, buf); err != nil {
		return "", err
	}
	return string(buf), nil
}

// fragmentingConn rewrites the first Write, a TLS ClientHello record, into
// records carrying at most fragment bytes of the handshake message each, and
// writes the result one byte per system call, so that the proxy sees the
// hello split across records and across TCP segments.
type fragmentingConn struct {
	*net.TCPConn
	fragment int
	done     bool
}

func (c *fragmentingConn) Write(p []byte) (int, error) {
	if c.done {
		return c.TCPConn.Write(p)
	}
	c.done = true
	out := refragment(p, c.fragment)
	for i := range out {
		if _, err := c.TCPConn.Write(out[i : i+1]); err != nil {
			return 0, err
		}
	}
	return len(p), nil
}

// refragment re-frames the handshake records in p into records of at most
// size bytes of payload each.
func refragment(p []byte, size int) []byte {
	var payload []byte
	hdr := p[:5]
	for off := 0; off+5 <= len(p); {
		n := int(binary.BigEndian.Uint16(p[off+3:]))
		payload = append(payload, p[off+5:off+5+n]...)
		off += 5 + n
	}
	var out []byte
	for len(payload) > 0 {
		n := min(size, len(payload))
		out = append(out, hdr[0], hdr[1], hdr[2], byte(n>>8), byte(n))
		out = append(out, payload[:n]...)
		payload = payload[n:]
	}
	return out
}

// captureClientHello returns the first bytes a crypto/tls client sends for
// serverName (its ClientHello records), caught by a real listener.
func captureClientHello(t testing.TB, serverName string) []byte {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	done := make(chan error, 1)
	go func() {
		nc, err := net.Dial("tcp", ln.Addr().String())
		if err != nil {
			done <- err
			return
		}
		defer nc.Close()
		nc.SetDeadline(time.Now().Add(10 * time.Second))
		// The handshake fails when the listener closes; only the hello
		// matters.
		tls.Client(nc, &tls.Config{ServerName: serverName, InsecureSkipVerify: true}).Handshake()
		done <- nil
	}()
	c, err := ln.Accept()
	if err != nil {
		t.Fatal(err)
	}
	c.SetDeadline(time.Now().Add(10 * time.Second))
	var hello []byte
	buf := make([]byte, 64<<10)
	for {
		n, err := c.Read(buf)
		hello = append(hello, buf[:n]...)
		if _, done := sniffTLS(hello); done || err != nil {
			break
		}
	}
	c.Close()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	return hello
}
