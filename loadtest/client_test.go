package loadtest

import (
	"bufio"
	"errors"
	"regexp"
	"strings"
	"testing"
)

// replyClient returns a client that reads reply and has no connection.
func replyClient(reply string) *client {
	return &client{r: bufio.NewReaderSize(strings.NewReader(reply), 64)}
}

func TestReadValuesParsesGetReplies(t *testing.T) {
	long := strings.Repeat("x", 1000) // longer than the reader's buffer
	tests := []struct {
		name    string
		reply   string
		values  int
		wantErr error // nil, a sentinel, or errAny
	}{
		{"miss", "END\r\n", 0, nil},
		{"hit", "VALUE k 0 3\r\nabc\r\nEND\r\n", 1, nil},
		{"hit with cas", "VALUE k 5 3 12345\r\nabc\r\nEND\r\n", 1, nil},
		{"multi", "VALUE a 0 1\r\na\r\nVALUE b 0 0\r\n\r\nEND\r\n", 2, nil},
		{"value containing END", "VALUE k 0 5\r\nEND\r\n\r\nEND\r\n", 1, nil},
		{"long value", "VALUE k 0 1000\r\n" + long + "\r\nEND\r\n", 1, nil},
		{"server error", "SERVER_ERROR out of memory\r\n", 0, errReplyKeep},
		{"client error", "CLIENT_ERROR bad command line format\r\n", 0, errReplyDrop},
		{"error", "ERROR\r\n", 0, errReplyDrop},
		{"server error after a value", "VALUE k 0 1\r\na\r\nSERVER_ERROR backend\r\n", 1, errReplyKeep},
		{"garbage", "STORED\r\n", 0, errAny},
		{"bare newline", "END\n", 0, errAny},
		{"bad length", "VALUE k 0 x\r\n", 0, errAny},
		{"missing length", "VALUE k 0\r\n", 0, errAny},
		{"data without CRLF", "VALUE k 0 3\r\nabcdEND\r\n", 0, errAny},
		{"truncated", "VALUE k 0 3\r\nab", 0, errAny},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			n, err := replyClient(tt.reply).readValues()
			checkErr(t, err, tt.wantErr)
			if tt.wantErr == nil && n != tt.values {
				t.Errorf("values = %d, want %d", n, tt.values)
			}
			if errors.Is(tt.wantErr, errReplyKeep) && n != tt.values {
				t.Errorf("values = %d, want %d", n, tt.values)
			}
		})
	}
}

func TestReadStoredAndDeleted(t *testing.T) {
	for _, tt := range []struct {
		reply   string
		wantErr error
	}{
		{"STORED\r\n", nil},
		{"NOT_STORED\r\n", errAny},
		{"SERVER_ERROR object too large for cache\r\n", errReplyKeep},
		{"CLIENT_ERROR bad data chunk\r\n", errReplyDrop},
	} {
		checkErr(t, replyClient(tt.reply).readStored(), tt.wantErr)
	}
	for _, tt := range []struct {
		reply   string
		found   bool
		wantErr error
	}{
		{"DELETED\r\n", true, nil},
		{"NOT_FOUND\r\n", false, nil},
		{"SERVER_ERROR busy\r\n", false, errReplyKeep},
		{"STORED\r\n", false, errAny},
	} {
		found, err := replyClient(tt.reply).readDeleted()
		checkErr(t, err, tt.wantErr)
		if found != tt.found {
			t.Errorf("%q: found = %v, want %v", tt.reply, found, tt.found)
		}
	}
}

func TestRequestsAreEncodedAsMemcachedExpects(t *testing.T) {
	b := appendEOL(appendGetKey(appendGetKey(appendGet(nil), "k", 0), "k", 1))
	if got, want := string(b), "get k1 k2\r\n"; got != want {
		t.Errorf("multi-get = %q, want %q", got, want)
	}
	if got, want := string(appendSet(nil, "User:", 41, []byte("abc"))), "set User:42 0 0 3\r\nabc\r\n"; got != want {
		t.Errorf("set = %q, want %q", got, want)
	}
	if got, want := string(appendDelete(nil, "k", 6)), "delete k7\r\n"; got != want {
		t.Errorf("delete = %q, want %q", got, want)
	}
}

// errAny stands for any error in the tables above.
var errAny = errors.New("any error")

func checkErr(t *testing.T, err, want error) {
	t.Helper()
	switch {
	case want == nil && err != nil:
		t.Errorf("err = %v, want none", err)
	case want == errAny && err == nil:
		t.Error("err = nil, want an error")
	case want != nil && want != errAny && !errors.Is(err, want):
		t.Errorf("err = %v, want %v", err, want)
	case want == errAny && (errors.Is(err, errReplyKeep) || errors.Is(err, errReplyDrop)):
		t.Errorf("err = %v, want a broken stream, not an error reply", err)
	}
}

func TestWorkloadEncodesEachOpOfTheMix(t *testing.T) {
	for _, tt := range []struct {
		mix  Mix
		op   op
		keys int
		re   string
	}{
		{Mix{Get: 1}, opGet, 1, `^get k[0-9]+\r\n$`},
		{Mix{MGet: 1, MGetKeys: 3}, opMGet, 3, `^get k[0-9]+ k[0-9]+ k[0-9]+\r\n$`},
		{Mix{Set: 1}, opSet, 1, `^set k[0-9]+ 0 0 2\r\nab\r\n$`},
		{Mix{Delete: 1}, opDelete, 1, `^delete k[0-9]+\r\n$`},
	} {
		cfg := Config{Addr: "x:1", Prefix: "k", Keys: 100, Mix: tt.mix, ValueSize: 2}.withDefaults()
		wl, err := newWorkload(&cfg)
		if err != nil {
			t.Fatal(err)
		}
		b, o, keys := wl.encode([]byte("junk"), newTestRand())
		if o != tt.op || keys != tt.keys || !regexp.MustCompile(tt.re).Match(b[len("junk"):]) {
			t.Errorf("%+v: encoded %q, %v, %d keys; want %s, %v, %d", tt.mix, b, o, keys, tt.re, tt.op, tt.keys)
		}
	}
}
