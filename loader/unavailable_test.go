package loader

import (
	"errors"
	"fmt"
	"testing"
)

func TestUnavailableTellsOutagesFromQueryErrors(t *testing.T) {
	var l *Loader // Unavailable looks at its argument only
	for _, tt := range []struct {
		err  error
		want bool
	}{
		{fmt.Errorf("%w: load User: dial tcp: connection refused", ErrUnavailable), true},
		{fmt.Errorf("%w: load User: 9 full batches wait for a query slot", ErrOverloaded), true},
		{ErrClosed, true},
		{fmt.Errorf("loader: load User: ERROR: division by zero (SQLSTATE 22012)"), false},
		{errors.New("proxy: loader returned the wrong number of rows"), false},
	} {
		if got := l.Unavailable(tt.err); got != tt.want {
			t.Errorf("Unavailable(%q) = %v, want %v", tt.err, got, tt.want)
		}
	}
}
