package spawner

import (
	"os/exec"
	"strconv"
	"syscall"
	"testing"
)

// BenchmarkStart compares starting a program (until it runs: exec
// succeeded; its exit is waited for off the clock) from
// this process with starting it through the helper, with 0 and 10,000
// listening sockets open here, as a daemon with 10,000 apps has. The
// helper's time does not grow with them; a fork and exec from here does.
//
//	go test -run '^$' -bench Start ./driver/exec/spawner
func BenchmarkStart(b *testing.B) {
	for _, n := range []int{0, 10000} {
		fds := openListeners(b, n)
		b.Run("direct/"+strconv.Itoa(n), func(b *testing.B) {
			for b.Loop() {
				cmd := exec.Command("/bin/true")
				cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
				if err := cmd.Start(); err != nil {
					b.Fatal(err)
				}
				b.StopTimer()
				if err := cmd.Wait(); err != nil {
					b.Fatal(err)
				}
				b.StartTimer()
			}
		})
		b.Run("spawner/"+strconv.Itoa(n), func(b *testing.B) {
			c := startClient(b)
			for b.Loop() {
				ch, err := c.Spawn(Request{Path: "/bin/true", Args: []string{"true"}}, nil)
				if err != nil {
					b.Fatal(err)
				}
				b.StopTimer()
				if err := ch.Wait(); err != nil {
					b.Fatal(err)
				}
				b.StartTimer()
			}
		})
		for _, fd := range fds {
			syscall.Close(fd)
		}
	}
}

// openListeners opens n listening sockets on 127.0.0.1 (close-on-exec,
// as Go opens every descriptor).
func openListeners(b *testing.B, n int) []int {
	b.Helper()
	var fds []int
	for range n {
		fd, err := syscall.Socket(syscall.AF_INET, syscall.SOCK_STREAM|syscall.SOCK_CLOEXEC, 0)
		if err != nil {
			b.Skipf("opening %d sockets: %v", n, err)
		}
		fds = append(fds, fd)
		if err := syscall.Bind(fd, &syscall.SockaddrInet4{Addr: [4]byte{127, 0, 0, 1}}); err != nil {
			b.Fatal(err)
		}
		if err := syscall.Listen(fd, 16); err != nil {
			b.Fatal(err)
		}
	}
	return fds
}
