package appsdir

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/dynapm/dynapm/internal/testutil"
)

// An app removed while another app needs it: the other app stays in force
// (what it runs is fine) with an error naming its file and field, logged
// once; re-adding the needed app serves both again.
func TestRemovingANeededAppIsAnErrorOnTheAppsThatNeedIt(t *testing.T) {
	dir := t.TempDir()
	web, db := filepath.Join(dir, "web.yaml"), filepath.Join(dir, "db.yaml")
	write(t, web, app(9001, "needs: [db]\n"))
	write(t, db, app(9002, ""))
	_, r := watch(t, dir, 0)
	if r.last("web") == nil || r.last("db") == nil {
		t.Fatal("web and db not both in force")
	}
	if err := os.Remove(db); err != nil {
		t.Fatal(err)
	}
	testutil.Eventually(t, 5*time.Second, func() bool { return r.count() == 2 && r.last("db") == nil }, "removed db still in force")
	if r.last("web") == nil {
		t.Fatal("web was dropped with db")
	}
	testutil.Eventually(t, 5*time.Second, func() bool {
		return strings.Contains(r.log(), "app file in force needs an app that is not") &&
			strings.Contains(r.log(), web+`: needs[0]: \"db\" is not an app that is served`)
	}, "no error on web:\n%s", r.log())
	write(t, db, app(9002, ""))
	testutil.Eventually(t, 5*time.Second, func() bool { return r.last("db") != nil && r.last("web") != nil }, "db not back")
	if n := strings.Count(r.log(), "app file in force needs an app that is not"); n != 1 {
		t.Fatalf("the error was logged %d times, want once", n)
	}
}
