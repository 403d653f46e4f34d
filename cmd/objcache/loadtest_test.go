package main

import (
	"bytes"
	"strings"
	"testing"
)

// loadtestRun runs "objcache loadtest args..." and returns its exit code,
// stdout and stderr.
func loadtestRun(t *testing.T, args ...string) (code int, stdout, stderr string) {
	t.Helper()
	var out, errOut bytes.Buffer
	code = run(append([]string{"loadtest"}, args...), &out, &errOut)
	return code, out.String(), errOut.String()
}

func TestLoadtestRefusesBadFlagsWithExit2(t *testing.T) {
	for _, tt := range []struct {
		args []string
		want string // in stderr
	}{
		{[]string{"--zipf", "-1"}, "zipf"},
		{[]string{"--zipf", "NaN"}, "zipf"},
		{[]string{"--zipf", "Inf"}, "zipf"},
		{[]string{"--zipf", "-1", "--hotspot"}, "zipf"},
		{[]string{"--zipf", "0.99", "--hotspot"}, "not both"},
	} {
		args := append([]string{"--addr", "127.0.0.1:1"}, tt.args...)
		code, stdout, stderr := loadtestRun(t, args...)
		if code != 2 || !strings.Contains(stderr, tt.want) || stdout != "" {
			t.Errorf("loadtest %s: exit %d, stderr %q, stdout %q; want exit 2 and a message about %q",
				strings.Join(tt.args, " "), code, stderr, stdout, tt.want)
		}
	}
}
