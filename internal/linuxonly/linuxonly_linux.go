// Package linuxonly stops a build of DynaPM for any system but Linux, with
// one readable line instead of a page of undefined system calls from the
// packages below it. Its only file is built on Linux alone, and package
// main imports it everywhere else (see linuxonly.go at the root), so the
// go command refuses at load time, before it compiles anything:
//
//	imports github.com/dynapm/dynapm/internal/linuxonly: build constraints exclude all Go files in .../internal/linuxonly
//
// It must have no test file: a package with only tests left for the target
// system turns the load error into a warning, and the build goes on to
// fail in every package that makes Linux system calls
// (TestOtherSystemsStopWithOneLineSayingLinuxOnly, at the root).
package linuxonly
