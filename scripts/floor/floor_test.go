package main

import (
	"bufio"
	"io"
	"net"
	"strconv"
	"strings"
	"testing"
	"time"
)

func TestHandleAnswersWholeRequestsAndLeavesTheRest(t *testing.T) {
	for _, tc := range []struct {
		name, in, want string
		used           int // -1: all of in
	}{
		{"miss", "get a\r\n", "END\r\n", -1},
		{"set then get", "set a 5 0 2\r\nhi\r\nget a b a\r\n", "STORED\r\nVALUE a 0 2\r\nhi\r\nVALUE a 0 2\r\nhi\r\nEND\r\n", -1},
		{"noreply", "set a 0 0 1 noreply\r\nx\r\nget a\r\n", "VALUE a 0 1\r\nx\r\nEND\r\n", -1},
		{"bare newline", "set a 0 0 1\nx\r\nget a\n", "STORED\r\nVALUE a 0 1\r\nx\r\nEND\r\n", -1},
		{"partial line", "get a\r\nget b", "END\r\n", len("get a\r\n")},
		{"partial data", "set a 0 0 10\r\nabc", "", 0},
		{"bad data chunk", "set a 0 0 1\r\nxyz\r\n", "CLIENT_ERROR bad data chunk\r\nERROR\r\n", -1},
		{"bad length", "set a 0 0 -1\r\n", "CLIENT_ERROR bad command line format\r\n", -1},
		{"too few fields", "set a 0 0\r\n", "CLIENT_ERROR bad command line format\r\n", -1},
		{"unknown", "stats\r\nversion\r\n", "ERROR\r\nVERSION floor\r\n", -1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			used, out := newStore().handle([]byte(tc.in), nil)
			want := tc.used
			if want < 0 {
				want = len(tc.in)
			}
			if string(out) != tc.want || used != want {
				t.Errorf("handle(%q) = %d, %q; want %d, %q", tc.in, used, out, want, tc.want)
			}
		})
	}
}

// A request split over many writes, and pipelined requests, are answered in
// order by both ways of serving.
func TestBothModesServeSplitAndPipelinedRequests(t *testing.T) {
	for _, mode := range []string{"goroutines", "epoll"} {
		t.Run(mode, func(t *testing.T) {
			ln, err := net.Listen("tcp", "127.0.0.1:0")
			if err != nil {
				t.Fatal(err)
			}
			defer ln.Close()
			st := newStore()
			if mode == "goroutines" {
				go serveGoroutines(ln, st)
			} else {
				go serveEpoll(ln.(*net.TCPListener), st, 2)
			}
			nc, err := net.Dial("tcp", ln.Addr().String())
			if err != nil {
				t.Fatal(err)
			}
			defer nc.Close()
			nc.SetDeadline(time.Now().Add(10 * time.Second))
			value := strings.Repeat("v", 100<<10) // more than one read, and than one write
			req := "set k 0 0 " + strconv.Itoa(len(value)) + "\r\n" + value + "\r\nget k\r\nget nope k\r\nversion\r\n"
			go func() {
				for i := 0; i < len(req); i += 7000 {
					nc.Write([]byte(req[i:min(i+7000, len(req))]))
				}
			}()
			want := "STORED\r\n" +
				"VALUE k 0 " + strconv.Itoa(len(value)) + "\r\n" + value + "\r\nEND\r\n" +
				"VALUE k 0 " + strconv.Itoa(len(value)) + "\r\n" + value + "\r\nEND\r\n" +
				"VERSION floor\r\n"
			got := make([]byte, len(want))
			if _, err := io.ReadFull(bufio.NewReader(nc), got); err != nil {
				t.Fatalf("reading the replies: %v (got %d bytes)", err, len(got))
			}
			if string(got) != want {
				t.Errorf("replies differ from the %d bytes expected", len(want))
			}
		})
	}
}
