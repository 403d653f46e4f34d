package protocol

import (
	"bufio"
	"strings"
	"testing"
)

// loopReader serves buf over and over without allocating, standing in for a
// client that pipelines the same requests forever.
type loopReader struct {
	buf []byte
	off int
}

func (r *loopReader) Read(p []byte) (int, error) {
	n := copy(p, r.buf[r.off:])
	r.off += n
	if r.off == len(r.buf) {
		r.off = 0
	}
	return n, nil
}

// loopParser returns a Parser reading req pipelined endlessly.
func loopParser(req string) *Parser {
	src := &loopReader{buf: []byte(strings.Repeat(req, 64))}
	return NewParser(bufio.NewReaderSize(src, 16<<10))
}

var (
	benchGet      = "get user:1234567890\r\n"
	benchSet      = "set user:1234567890 0 3600 200\r\n" + strings.Repeat("v", 200) + "\r\n"
	benchMultiGet = "get" + strings.Repeat(" user:1234567890", 10) + "\r\n"
)

func benchmarkParse(b *testing.B, req string, want Command) {
	p := loopParser(req)
	var r Request
	b.ReportAllocs()
	b.SetBytes(int64(len(req)))
	for b.Loop() {
		if err := p.Parse(&r); err != nil {
			b.Fatal(err)
		}
	}
	if r.Command != want {
		b.Fatalf("parsed %v, want %v", r.Command, want)
	}
}

func BenchmarkParseGet(b *testing.B)      { benchmarkParse(b, benchGet, CmdGet) }
func BenchmarkParseSet(b *testing.B)      { benchmarkParse(b, benchSet, CmdSet) }
func BenchmarkParseMultiGet(b *testing.B) { benchmarkParse(b, benchMultiGet, CmdGet) }

func TestParseDoesNotAllocate(t *testing.T) {
	if raceEnabled {
		t.Skip("the race detector allocates")
	}
	tests := []struct {
		name string
		req  string
		want Command
	}{
		{"get", benchGet, CmdGet},
		{"set", benchSet, CmdSet},
		{"multi-get", benchMultiGet, CmdGet},
		{"set noreply", "set k 0 0 1 noreply\r\na\r\n", CmdSet},
		{"gats", "gats 10 a b c\r\n", CmdGats},
		{"cas", "cas k 0 0 1 99\r\na\r\n", CmdCas},
		{"delete", "delete k noreply\r\n", CmdDelete},
		{"incr", "incr k 1\r\n", CmdIncr},
		{"stats", "stats items\r\n", CmdStats},
		{"unknown command", "bogus command\r\n", CmdError},
		{"bad data chunk", "set k 0 0 1\r\nab\n", CmdError},
	}
	for _, tc := range tests {
		p := loopParser(tc.req)
		var r Request
		for range 3 { // grow the Request's buffers
			if err := p.Parse(&r); err != nil {
				t.Fatal(err)
			}
		}
		allocs := testing.AllocsPerRun(100, func() {
			if err := p.Parse(&r); err != nil {
				t.Fatal(err)
			}
		})
		if allocs != 0 {
			t.Errorf("%s: %v allocations per Parse, want 0", tc.name, allocs)
		}
		if r.Command != tc.want {
			t.Errorf("%s: parsed %v, want %v", tc.name, r.Command, tc.want)
		}
	}
}

func TestReadReplyDoesNotAllocate(t *testing.T) {
	if raceEnabled {
		t.Skip("the race detector allocates")
	}
	reply := string(AppendValue(nil, []byte("user:1"), 0, []byte(strings.Repeat("v", 200)), 7, true)) +
		string(AppendValue(nil, []byte("user:2"), 1, []byte("x"), 8, true)) + "END\r\n"
	br := bufio.NewReaderSize(&loopReader{buf: []byte(strings.Repeat(reply, 16))}, 16<<10)
	var rep Reply
	read := func() {
		if err := ReadReply(br, CmdGets, &rep, 1<<20); err != nil || len(rep.Values) != 2 {
			t.Fatalf("ReadReply: %v, %d values", err, len(rep.Values))
		}
	}
	read()
	if allocs := testing.AllocsPerRun(100, read); allocs != 0 {
		t.Errorf("%v allocations per ReadReply, want 0", allocs)
	}
}
