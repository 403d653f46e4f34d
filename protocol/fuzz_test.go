package protocol

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"strings"
	"testing"
)

// fuzzSeeds are request streams, valid and not, that start the fuzzer near
// every branch of the parser.
var fuzzSeeds = []string{
	"get k\r\n",
	"get a\r\n\x80\x00\x00\x01\x00\x00\x00\x00\x00\x00\x00\x01\x00\x00\x00\x07\x00\x00\x00\x00\x00\x00\x00\x00k", // a binary get after a text one
	"get a b c\r\ngets a\r\nbget b\r\n",
	"gat 10 a b\r\ngats -1 a\r\ngat 0\r\n",
	"set k 0 0 5\r\nhello\r\n",
	"set k 1 2 3 noreply\r\nabc\r\nget k\r\n",
	"add k 0 0 1\na\r\nreplace k 0 0 1\r\nb\r\nappend k 0 0 1\r\nc\r\nprepend k 0 0 1\r\nd\r\n",
	"cas k 0 0 1 99\r\na\r\ncas k 0 0 1 99 noreply\r\na\r\n",
	"delete k\r\ndelete k 0\r\ndelete k noreply\r\ndelete k 0 noreply\r\ndelete k 1\r\n",
	"incr k 1\r\ndecr k 18446744073709551615 noreply\r\nincr k abc\r\n",
	"touch k 10\r\ntouch k abc noreply\r\n",
	"flush_all\r\nflush_all 10 noreply\r\nflush_all abc\r\n",
	"version\r\nverbosity 1\r\nverbosity noreply\r\nstats\r\nstats items\r\nquit\r\n",
	"\r\n\n\r\r\n   \r\ng\r\nfoo bar\r\n",
	"GET / HTTP/1.1\r\nHost: x\r\n\r\n",
	"gxx / HTTP/1.1\r\nmx HTTP/1.1\r\n",
	"set k +5 -0 4294967297\r\na\r\n",
	"set k -1 0 1\r\na\r\nset k 0x10 0 1\r\na\r\n",
	"set k 5\t 0 1\t\r\na\r\n",
	"set k 0 0 -1\r\nset k 0 0 2147483646\r\n",
	"set k 0 0 4097\r\n" + strings.Repeat("v", 4097) + "\r\nget k\r\n",
	"set k 0 0 1\r\nabc\r\nget k\r\n",
	"set k 0 0 noreply\r\nversion\r\n",
	"get k\x00 junk\r\nset k 0 0 1\x00\r\na\r\n",
	"get " + strings.Repeat("k", 251) + "\r\n",
	"set " + strings.Repeat("k", 250) + " 0 0 1\r\na\r\n",
	"get " + strings.Repeat("key ", 600) + "\r\nversion\r\n",
	strings.Repeat(" ", 100) + "get " + strings.Repeat("key ", 600) + "\r\n",
	"get " + strings.Repeat("key ", 2500) + "\r\nget k\r\n",
	"set " + strings.Repeat("x", 3000) + "\r\n",
	"zz 1 2 3 4 5 6 7 8 9 10 11 12 13 14 15 16 17 18 19 20 21 HTTP/1.1 w\r\n",
	"get a b c d e f g h i j k l m n o p q r s t u v w x y z\r\n",
	"set k 0 0 5\r\nhel",
}

// fuzzParser returns the parser configuration the fuzzer uses: the smallest
// buffer and small limits, so that every limit is within reach.
func fuzzParser(r io.Reader) *Parser {
	p := NewParser(bufio.NewReaderSize(r, MinBufferSize))
	p.MaxItemSize = 4096
	p.MaxLineLength = 8192
	return p
}

// FuzzParse parses arbitrary input until the parser stops and checks what
// every parsed request promises.
func FuzzParse(f *testing.F) {
	for _, s := range fuzzSeeds {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, in []byte) {
		got, err := fuzzParseAll(t, fuzzParser(bytes.NewReader(in)), len(in))
		// How reads are split must not matter.
		again, err2 := fuzzParseAll(t, fuzzParser(&oneByteReader{s: string(in)}), len(in))
		if !errors.Is(err2, err) || len(got) != len(again) {
			t.Fatalf("one-byte reads: %d requests, %v; want %d, %v", len(again), err2, len(got), err)
		}
		for i := range got {
			if got[i] != again[i] {
				t.Fatalf("one-byte reads: request %d = %s, want %s", i, again[i], got[i])
			}
		}
	})
}

// fuzzParseAll parses requests from p until an error, checking each, and
// returns a description of each request.
func fuzzParseAll(t *testing.T, p *Parser, inLen int) ([]string, error) {
	var req Request
	var got []string
	for {
		err := p.Parse(&req)
		if err != nil {
			switch {
			case err == io.EOF, err == io.ErrUnexpectedEOF, err == ErrLineTooLong, err == ErrHTTP:
			default:
				t.Fatalf("Parse returned unexpected error %v", err)
			}
			return got, err
		}
		// Every request consumes at least its newline.
		if len(got) >= inLen {
			t.Fatalf("%d requests from %d bytes", len(got)+1, inLen)
		}
		checkRequestInvariants(&req)
		if len(req.Line) > max(p.r.Size(), p.MaxLineLength) {
			t.Fatalf("Line of %d bytes", len(req.Line))
		}
		if len(req.Data) > p.MaxItemSize+2 {
			t.Fatalf("Data of %d bytes", len(req.Data))
		}
		if req.Command != CmdError {
			checkForwardReparses(t, &req)
		}
		got = append(got, fmt.Sprintf("%+v", snapshot(&req)))
	}
}

// checkForwardReparses checks that the line the proxy forwards means the
// same request to a backend parsing it as memcached does, without noreply.
func checkForwardReparses(t *testing.T, req *Request) {
	var b []byte
	b = req.AppendForward(b)
	b = append(b, "\r\n"...)
	b = append(b, req.Data...)
	p := NewParser(bufio.NewReaderSize(bytes.NewReader(b), 16<<10))
	var back Request
	if err := p.Parse(&back); err != nil {
		t.Fatalf("forwarded %q: %v", b, err)
	}
	want := snapshot(req)
	want.NoReply = false
	if got := snapshot(&back); fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("forwarded %q parses as %+v, want %+v", b, got, want)
	}
}
