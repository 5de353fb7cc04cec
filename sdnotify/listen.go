package sdnotify

import (
	"bytes"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"net"
	"syscall"
)

// The receiving side: DynaPM plays systemd's part for the programs it runs
// with ready: {notify: true}, each start with a socket of its own.

// MaxMessage is the longest notification read, as systemd's
// NOTIFY_BUFFER_MAX: a longer one is dropped whole.
const MaxMessage = 4096

// oobSize holds the sender's credentials and the most descriptors one
// message can pass (SCM_MAX_FD), so that every descriptor a sender pushes
// arrives here to be closed rather than half of them cut off.
var oobSize = syscall.CmsgSpace(syscall.SizeofUcred) + syscall.CmsgSpace(253*4)

// Message is one notification and its sender as the kernel vouches for it.
type Message struct {
	// Fields are the message's assignments (READY=1, STATUS=...).
	Fields map[string]string
	// PID, UID and GID are the sender's.
	PID      int
	UID, GID uint32
}

// Listener receives notifications on an abstract datagram socket of a
// random name. Abstract sockets have no file permissions: anyone on the
// host (in the same network namespace) can send to one, which is why each
// message comes with its sender's credentials for the receiver to judge.
type Listener struct {
	conn   *net.UnixConn
	socket string
}

// Listen opens a Listener.
func Listen() (*Listener, error) {
	var b [12]byte
	if _, err := rand.Read(b[:]); err != nil {
		return nil, fmt.Errorf("opening a notify socket: %w", err)
	}
	// "@" is how Go and NOTIFY_SOCKET both spell an abstract name.
	socket := "@dynapm/notify/" + hex.EncodeToString(b[:])
	conn, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: socket, Net: "unixgram"})
	if err != nil {
		return nil, fmt.Errorf("opening a notify socket: %w", err)
	}
	raw, err := conn.SyscallConn()
	if err == nil {
		cerr := raw.Control(func(fd uintptr) {
			err = syscall.SetsockoptInt(int(fd), syscall.SOL_SOCKET, syscall.SO_PASSCRED, 1)
		})
		if cerr != nil {
			err = cerr
		}
	}
	if err != nil {
		conn.Close()
		return nil, fmt.Errorf("opening a notify socket: SO_PASSCRED: %w", err)
	}
	return &Listener{conn: conn, socket: socket}, nil
}

// Socket is the NOTIFY_SOCKET value that reaches l.
func (l *Listener) Socket() string { return l.socket }

// Receive blocks until a message arrives and returns it. A message longer
// than MaxMessage, or without credentials, is skipped; descriptors passed
// along (FDSTORE=1) are closed. It returns an error once l is closed.
func (l *Listener) Receive() (Message, error) {
	buf := make([]byte, MaxMessage+1)
	oob := make([]byte, oobSize)
	for {
		n, oobn, flags, _, err := l.conn.ReadMsgUnix(buf, oob)
		if err != nil {
			return Message{}, err
		}
		cred := credentials(oob[:oobn])
		if n > MaxMessage || flags&syscall.MSG_TRUNC != 0 || cred == nil || cred.Pid == 0 {
			continue
		}
		return Message{Fields: Parse(buf[:n]), PID: int(cred.Pid), UID: cred.Uid, GID: cred.Gid}, nil
	}
}

// credentials returns the sender's credentials among the control messages,
// and closes any descriptor they carry.
func credentials(oob []byte) *syscall.Ucred {
	msgs, err := syscall.ParseSocketControlMessage(oob)
	if err != nil {
		return nil
	}
	var cred *syscall.Ucred
	for i := range msgs {
		if fds, err := syscall.ParseUnixRights(&msgs[i]); err == nil {
			for _, fd := range fds {
				syscall.Close(fd)
			}
			continue
		}
		if c, err := syscall.ParseUnixCredentials(&msgs[i]); err == nil {
			cred = c
		}
	}
	return cred
}

// Close closes the socket; a Receive in progress returns an error.
func (l *Listener) Close() error { return l.conn.Close() }

// Parse reads one notification: newline-separated VARIABLE=VALUE
// assignments (sd_notify(3)). A line without '=' is skipped; a variable
// given twice keeps its last value.
func Parse(msg []byte) map[string]string {
	fields := make(map[string]string)
	for line := range bytes.SplitSeq(msg, []byte("\n")) {
		if k, v, ok := bytes.Cut(line, []byte("=")); ok && len(k) > 0 {
			fields[string(k)] = string(v)
		}
	}
	return fields
}
