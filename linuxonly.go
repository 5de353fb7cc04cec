//go:build !linux

// DynaPM runs on Linux only (see the README's Requirements): its data path
// is epoll, splice(2) and accept4, and it reads /proc. This import stops a
// build for any other system at load time, with one line naming
// internal/linuxonly, rather than with the compile errors of every package
// that makes Linux system calls.

package main

import _ "github.com/dynapm/dynapm/internal/linuxonly"
