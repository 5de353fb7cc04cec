package memory

import (
	"os"
	"testing"
)

const mib = 1 << 20

func TestReadMeminfoReadsTheRealMachine(t *testing.T) {
	mi, err := ReadMeminfo()
	if err != nil {
		t.Fatal(err)
	}
	if mi.Total < 64*mib {
		t.Errorf("MemTotal = %d, implausibly small", mi.Total)
	}
	if mi.Available <= 0 || mi.Available > mi.Total {
		t.Errorf("MemAvailable = %d, want in (0, %d]", mi.Available, mi.Total)
	}
	avail, total, err := MeminfoReader{}.Available()
	if err != nil || total != mi.Total || avail <= 0 {
		t.Errorf("MeminfoReader.Available() = %d, %d, %v", avail, total, err)
	}
}

func TestParseMeminfoNeedsBothFields(t *testing.T) {
	good := "MemTotal:       1000 kB\nMemFree:  10 kB\nMemAvailable:    500 kB\n"
	mi, err := parseMeminfo([]byte(good))
	if err != nil || mi.Total != 1000*1024 || mi.Available != 500*1024 {
		t.Fatalf("parseMeminfo = %+v, %v", mi, err)
	}
	for _, bad := range []string{
		"MemTotal: 1000 kB\nMemFree: 10 kB\n",
		"MemTotal: x kB\nMemAvailable: 5 kB\n",
		"",
	} {
		if _, err := parseMeminfo([]byte(bad)); err == nil {
			t.Errorf("parseMeminfo(%q) succeeded", bad)
		}
	}
}

func TestTreeRSSOfThisProcess(t *testing.T) {
	rss, err := TreeRSS(os.Getpid())
	if err != nil {
		t.Fatal(err)
	}
	if rss < mib {
		t.Errorf("TreeRSS(self) = %d, want at least 1 MiB", rss)
	}
}

func TestTreeRSSOfMissingProcessFails(t *testing.T) {
	h := startHelper(t, 0, false)
	pid := h.pid()
	h.kill()
	if _, err := TreeRSS(pid); err == nil {
		t.Errorf("TreeRSS of reaped pid %d succeeded", pid)
	}
}

func TestTreeRSSGrowsWithAllocation(t *testing.T) {
	small := startHelper(t, 0, false)
	big := startHelper(t, 64, false)
	base, err := TreeRSS(small.pid())
	if err != nil {
		t.Fatal(err)
	}
	grown, err := TreeRSS(big.pid())
	if err != nil {
		t.Fatal(err)
	}
	checkGrowth(t, base, grown, 64*mib)
}

func TestTreeRSSCountsDescendants(t *testing.T) {
	// The fork helper's own process allocates nothing; the 64 MiB live in
	// its child, which only a walk of the tree finds.
	small := startHelper(t, 0, true)
	big := startHelper(t, 64, true)
	own, err := (&treeWalker{}).processRSS(big.pid())
	if err != nil {
		t.Fatal(err)
	}
	if own > 48*mib {
		t.Fatalf("the fork helper itself holds %d bytes; the test is meaningless", own)
	}
	base, err := TreeRSS(small.pid())
	if err != nil {
		t.Fatal(err)
	}
	grown, err := TreeRSS(big.pid())
	if err != nil {
		t.Fatal(err)
	}
	checkGrowth(t, base, grown, 64*mib)
}

func TestTreeRSSWithoutChildrenFilesScansProc(t *testing.T) {
	small := startHelper(t, 0, true)
	big := startHelper(t, 64, true)
	base, err := (&treeWalker{noChildrenFiles: true}).treeRSS(small.pid())
	if err != nil {
		t.Fatal(err)
	}
	grown, err := (&treeWalker{noChildrenFiles: true}).treeRSS(big.pid())
	if err != nil {
		t.Fatal(err)
	}
	checkGrowth(t, base, grown, 64*mib)
}

// checkGrowth asserts that grown exceeds base by roughly alloc bytes, with
// bounds generous enough for runtime noise.
func checkGrowth(t *testing.T, base, grown, alloc int64) {
	t.Helper()
	d := grown - base
	if d < alloc*9/10 || d > alloc*3/2 {
		t.Errorf("tree RSS grew by %d MiB (from %d to %d MiB), want about %d MiB",
			d/mib, base/mib, grown/mib, alloc/mib)
	}
}

func TestReadPSIOnThisKernel(t *testing.T) {
	p, ok, err := ReadPSI()
	if err != nil {
		t.Fatal(err)
	}
	_, statErr := os.Stat(psiPath)
	if statErr != nil && ok {
		t.Errorf("ReadPSI ok without %s", psiPath)
	}
	if ok && (p.SomeAvg10 < 0 || p.SomeAvg10 > 100) {
		t.Errorf("some avg10 = %v, want a percentage", p.SomeAvg10)
	}
}

func TestParsePSI(t *testing.T) {
	p, err := parsePSI([]byte("some avg10=1.25 avg60=0.50 avg300=0.00 total=12345\nfull avg10=0.00 avg60=0.00 avg300=0.00 total=0\n"))
	if err != nil || p.SomeAvg10 != 1.25 || p.SomeTotal != 12345 {
		t.Fatalf("parsePSI = %+v, %v", p, err)
	}
	if _, err := parsePSI([]byte("full avg10=0.00 total=0\n")); err == nil {
		t.Error("parsePSI without a some line succeeded")
	}
	if _, err := parsePSI([]byte("some avg10=x total=0\n")); err == nil {
		t.Error("parsePSI with a bad number succeeded")
	}
}

func TestReadProcFileGrowsItsBuffer(t *testing.T) {
	want, err := os.ReadFile("/proc/self/status") // longer than 16 bytes
	if err != nil {
		t.Fatal(err)
	}
	got, buf, err := readProcFile("/proc/self/status", make([]byte, 16))
	if err != nil {
		t.Fatal(err)
	}
	if len(got) < len(want)/2 || string(got[:5]) != "Name:" || cap(buf) < len(got) {
		t.Fatalf("read %d bytes %q..., want about %d", len(got), got[:min(len(got), 16)], len(want))
	}
	if _, _, err := readProcFile("/proc/no-such-file", nil); err == nil {
		t.Fatal("reading a missing file succeeded")
	}
}
