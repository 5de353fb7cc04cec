package memory

import (
	"bytes"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"strconv"
)

// TreeRSS returns the resident set size in bytes of process pid and all its
// descendants. Pages shared between processes of the tree (forked workers)
// are counted once per process, as ps and top do: an overestimate, which is
// the safe side for a budget.
//
// Descendants that exit during the walk are skipped; an error is returned
// only when pid itself cannot be read.
func TreeRSS(pid int) (int64, error) {
	var w treeWalker
	return w.treeRSS(pid)
}

// treeWalker walks process trees in /proc. One walker serves one check of
// the Monitor, so the fallback full scan of /proc (only on kernels without
// /proc/PID/task/TID/children) is done at most once per check.
type treeWalker struct {
	// noChildrenFiles is set once the kernel turns out not to offer
	// /proc/PID/task/TID/children (CONFIG_PROC_CHILDREN off).
	noChildrenFiles bool
	// byParent maps a pid to its children, built by the fallback scan.
	byParent map[int][]int
	// buf is reused for every small /proc read.
	buf []byte
}

// treeRSS walks the tree under pid depth first.
func (w *treeWalker) treeRSS(pid int) (int64, error) {
	root, err := w.processRSS(pid)
	if err != nil {
		return 0, fmt.Errorf("reading rss of pid %d: %w", pid, err)
	}
	total := root
	seen := map[int]bool{pid: true}
	stack := w.children(pid, nil)
	for len(stack) > 0 {
		p := stack[len(stack)-1]
		stack = stack[:len(stack)-1]
		if seen[p] {
			continue // a pid reused during the walk must not loop
		}
		seen[p] = true
		rss, err := w.processRSS(p)
		if err != nil {
			continue // exited during the walk
		}
		total += rss
		stack = w.children(p, stack)
	}
	return total, nil
}

// read reads a small /proc file into the walker's buffer; the result is
// valid until the next read.
func (w *treeWalker) read(path string) ([]byte, error) {
	b, buf, err := readProcFile(path, w.buf)
	w.buf = buf
	return b, err
}

// processRSS reads the second field of /proc/PID/statm (resident pages): the
// cheapest source of RSS, one small read and no page table walk as with
// smaps_rollup.
func (w *treeWalker) processRSS(pid int) (int64, error) {
	b, err := w.read("/proc/" + strconv.Itoa(pid) + "/statm")
	if err != nil {
		return 0, err
	}
	f := bytes.Fields(b)
	if len(f) < 2 {
		return 0, fmt.Errorf("parsing statm of pid %d: too few fields", pid)
	}
	pages, err := strconv.ParseInt(string(f[1]), 10, 64)
	if err != nil {
		return 0, fmt.Errorf("parsing statm of pid %d: %w", pid, err)
	}
	return pages * int64(os.Getpagesize()), nil
}

// children appends the children of pid to dst.
func (w *treeWalker) children(pid int, dst []int) []int {
	if !w.noChildrenFiles {
		kids, err := w.childrenFromTasks(pid, dst)
		if err == nil {
			return kids
		}
		if !errors.Is(err, errNoChildrenFiles) {
			return dst // pid exited: no children to count
		}
		w.noChildrenFiles = true
	}
	if w.byParent == nil {
		w.byParent = scanParents()
	}
	return append(dst, w.byParent[pid]...)
}

// errNoChildrenFiles says the kernel has no /proc/PID/task/TID/children.
var errNoChildrenFiles = errors.New("no /proc children files")

// childrenFromTasks reads /proc/PID/task/TID/children for every thread of
// pid: a child is listed under the thread that forked it.
func (w *treeWalker) childrenFromTasks(pid int, dst []int) ([]int, error) {
	dir := "/proc/" + strconv.Itoa(pid) + "/task/"
	tasks, err := os.ReadDir(dir)
	if err != nil {
		return dst, err
	}
	for i, t := range tasks {
		b, err := w.read(dir + t.Name() + "/children")
		if err != nil {
			if i == 0 && errors.Is(err, fs.ErrNotExist) {
				if _, serr := os.Stat(dir + t.Name()); serr == nil {
					return dst, errNoChildrenFiles
				}
			}
			continue // thread exited
		}
		for _, f := range bytes.Fields(b) {
			if n, err := strconv.Atoi(string(f)); err == nil {
				dst = append(dst, n)
			}
		}
	}
	return dst, nil
}

// scanParents reads the parent of every process in /proc.
func scanParents() map[int][]int {
	byParent := make(map[int][]int)
	ents, err := os.ReadDir("/proc")
	if err != nil {
		return byParent
	}
	for _, e := range ents {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		b, err := os.ReadFile("/proc/" + e.Name() + "/stat")
		if err != nil {
			continue
		}
		if ppid, ok := parseStatPPID(b); ok {
			byParent[ppid] = append(byParent[ppid], pid)
		}
	}
	return byParent
}

// parseStatPPID returns the fourth field of /proc/PID/stat. The command name
// in parentheses may hold spaces and parentheses, so parsing starts after
// the last ')'.
func parseStatPPID(b []byte) (int, bool) {
	i := bytes.LastIndexByte(b, ')')
	if i < 0 {
		return 0, false
	}
	f := bytes.Fields(b[i+1:])
	if len(f) < 2 {
		return 0, false
	}
	ppid, err := strconv.Atoi(string(f[1]))
	return ppid, err == nil
}
