// Command echo is the example TCP app in apps.d/echo.toml: it sends back
// the first line it receives and closes the connection, to show that
// DynaPM proxies any TCP protocol. Closing after the reply lets
// `echo hi | curl -s telnet://...` and `nc` end on their own: neither
// tells the server that its input has ended.
package main

import (
	"bufio"
	"log"
	"net"
	"os"
	"time"
)

func main() {
	addr := "127.0.0.1:" + os.Getenv("PORT")
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		log.Fatal(err)
	}
	log.Printf("echo: listening on %s", ln.Addr())
	for {
		c, err := ln.Accept()
		if err != nil {
			log.Fatal(err)
		}
		go echo(c)
	}
}

// echo answers one line (or what came before the client closed) and
// closes; a client that says nothing is dropped after a minute.
func echo(c net.Conn) {
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(time.Minute))
	line, err := bufio.NewReaderSize(c, 64<<10).ReadSlice('\n')
	if len(line) > 0 {
		_, _ = c.Write(line)
	}
	if err != nil && len(line) == 0 {
		log.Printf("echo: %s: %v", c.RemoteAddr(), err)
	}
}
