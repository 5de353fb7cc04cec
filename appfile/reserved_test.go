package appfile

import (
	"strings"
	"testing"
)

func TestCheckReservedNamesTheFieldAndTheDaemonsAddress(t *testing.T) {
	own := []Reserved{{Addr: "127.0.0.1:9464", What: "the daemon's metrics address"}}
	for _, tc := range []struct {
		listen, upstream, want string
	}{
		{"127.0.0.1:9464", "", "listen[0]"},
		{"localhost:9464", "", "listen[0]"},
		{":9464", "", "listen[0]"},
		{"127.0.0.2:9464", "", ""},
		{"127.0.0.1:9465", "127.0.0.1:9464", "upstream"},
		{"127.0.0.1:9465", "", ""},
	} {
		s := &Spec{File: "/apps/web.yaml", Listen: []string{tc.listen}, Upstream: tc.upstream}
		err := CheckReserved(s, own)
		if tc.want == "" {
			if err != nil {
				t.Errorf("listen %s upstream %s: %v, want no clash", tc.listen, tc.upstream, err)
			}
			continue
		}
		if err == nil || !strings.Contains(err.Error(), "/apps/web.yaml: "+tc.want) || !strings.Contains(err.Error(), "metrics address") {
			t.Errorf("listen %s upstream %s: %v, want an error naming the file, %s and the metrics address", tc.listen, tc.upstream, err, tc.want)
		}
	}
	wild := []Reserved{{Addr: "[::]:9464", What: "the daemon's metrics address"}}
	if CheckReserved(&Spec{File: "f", Listen: []string{"127.0.0.1:9464"}}, wild) == nil {
		t.Error("an app on 127.0.0.1 beside metrics on all addresses: no clash reported")
	}
}
