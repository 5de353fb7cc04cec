// Command echo is the example TCP app in apps.d/echo.toml: it sends back
// whatever it receives, to show that DynaPM proxies any TCP protocol.
package main

import (
	"io"
	"log"
	"net"
	"os"
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

func echo(c net.Conn) {
	defer c.Close()
	_, _ = io.Copy(c, c)
}
