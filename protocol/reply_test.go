package protocol

import (
	"bufio"
	"errors"
	"io"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

// value is the part of a Value a test compares, resolved against its Reply.
type value struct {
	Key    string
	Flags  uint32
	Data   string
	Cas    uint64
	HasCas bool
	Block  string
}

func values(rep *Reply) []value {
	var vs []value
	for i := range rep.Values {
		v := &rep.Values[i]
		vs = append(vs, value{
			Key: string(rep.Key(v)), Flags: v.Flags, Data: string(rep.Data(v)),
			Cas: v.Cas, HasCas: v.HasCas, Block: string(rep.Block(v)),
		})
	}
	return vs
}

func readReply(in string, cmd Command) (*Reply, error) {
	var rep Reply
	err := ReadReply(bufio.NewReaderSize(strings.NewReader(in), 4096), cmd, &rep, 1<<20)
	return &rep, err
}

func TestReadReplyRetrieval(t *testing.T) {
	tests := []struct {
		name   string
		cmd    Command
		in     string
		raw    string
		values []value
		ended  bool
	}{
		{
			name:  "END only",
			cmd:   CmdGet,
			in:    "END\r\n",
			ended: true,
		},
		{
			name: "several values without cas",
			cmd:  CmdGet,
			in:   "VALUE a 1 3\r\nabc\r\nVALUE bb 4294967295 0\r\n\r\nVALUE c 0 4\r\nx\r\ny\r\nEND\r\n",
			raw:  "VALUE a 1 3\r\nabc\r\nVALUE bb 4294967295 0\r\n\r\nVALUE c 0 4\r\nx\r\ny\r\n",
			values: []value{
				{Key: "a", Flags: 1, Data: "abc", Block: "VALUE a 1 3\r\nabc\r\n"},
				{Key: "bb", Flags: 1<<32 - 1, Data: "", Block: "VALUE bb 4294967295 0\r\n\r\n"},
				{Key: "c", Data: "x\r\ny", Block: "VALUE c 0 4\r\nx\r\ny\r\n"},
			},
			ended: true,
		},
		{
			name: "several values with cas",
			cmd:  CmdGets,
			in:   "VALUE a 0 1 6\r\n1\r\nVALUE b 2 2 18446744073709551615\r\n22\r\nEND\r\n",
			raw:  "VALUE a 0 1 6\r\n1\r\nVALUE b 2 2 18446744073709551615\r\n22\r\n",
			values: []value{
				{Key: "a", Data: "1", Cas: 6, HasCas: true, Block: "VALUE a 0 1 6\r\n1\r\n"},
				{Key: "b", Flags: 2, Data: "22", Cas: 1<<64 - 1, HasCas: true,
					Block: "VALUE b 2 2 18446744073709551615\r\n22\r\n"},
			},
			ended: true,
		},
		{
			name: "value data that looks like END",
			cmd:  CmdGat,
			in:   "VALUE k 0 5\r\nEND\r\n\r\nEND\r\n",
			raw:  "VALUE k 0 5\r\nEND\r\n\r\n",
			values: []value{
				{Key: "k", Data: "END\r\n", Block: "VALUE k 0 5\r\nEND\r\n\r\n"},
			},
			ended: true,
		},
		{
			name: "error line instead of values",
			cmd:  CmdGet,
			in:   "CLIENT_ERROR bad command line format\r\n",
			raw:  "CLIENT_ERROR bad command line format\r\n",
		},
		{
			name: "error line after a value drops the value",
			cmd:  CmdGats,
			in:   "VALUE a 0 1 1\r\na\r\nSERVER_ERROR out of memory writing get response\r\n",
			raw:  "SERVER_ERROR out of memory writing get response\r\n",
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			rep, err := readReply(tc.in, tc.cmd)
			if err != nil {
				t.Fatalf("ReadReply = %v", err)
			}
			if got := string(rep.Raw); got != tc.raw {
				t.Errorf("Raw = %q, want %q", got, tc.raw)
			}
			if rep.Ended != tc.ended {
				t.Errorf("Ended = %v, want %v", rep.Ended, tc.ended)
			}
			if diff := cmp.Diff(values(rep), tc.values); diff != "" {
				t.Errorf("Values mismatch (-got +want):\n%s", diff)
			}
		})
	}
}

func TestReadReplyStatsKeepsLinesThroughEND(t *testing.T) {
	in := "STAT pid 1\r\nSTAT version 1.6.18\r\nEND\r\nSTORED\r\n"
	br := bufio.NewReader(strings.NewReader(in))
	var rep Reply
	if err := ReadReply(br, CmdStats, &rep, 1<<20); err != nil {
		t.Fatal(err)
	}
	if got, want := string(rep.Raw), "STAT pid 1\r\nSTAT version 1.6.18\r\nEND\r\n"; got != want {
		t.Errorf("Raw = %q, want %q", got, want)
	}
	// The reader is left at the next reply.
	if err := ReadReply(br, CmdSet, &rep, 1<<20); err != nil || string(rep.Raw) != "STORED\r\n" {
		t.Errorf("next reply = %q, %v; want STORED", rep.Raw, err)
	}
	for _, in := range []string{"ERROR\r\n", "RESET\r\n", "END\r\n"} {
		rep, err := readReply(in, CmdStats)
		if err != nil || string(rep.Raw) != in {
			t.Errorf("stats reply %q: Raw = %q, %v", in, rep.Raw, err)
		}
	}
}

func TestReadReplySingleLine(t *testing.T) {
	tests := []struct {
		cmd Command
		in  string
	}{
		{CmdSet, "STORED\r\n"},
		{CmdAdd, "NOT_STORED\r\n"},
		{CmdCas, "EXISTS\r\n"},
		{CmdCas, "NOT_FOUND\r\n"},
		{CmdDelete, "DELETED\r\n"},
		{CmdIncr, "18446744073709551615\r\n"},
		{CmdDecr, "CLIENT_ERROR cannot increment or decrement non-numeric value\r\n"},
		{CmdTouch, "TOUCHED\r\n"},
		{CmdFlushAll, "OK\r\n"},
		{CmdVersion, "VERSION 1.6.18\r\n"},
		{CmdVerbosity, "OK\r\n"},
		{CmdSet, "SERVER_ERROR object too large for cache\r\n"},
		{CmdSet, "\r\n"},
	}
	for _, tc := range tests {
		// A second reply follows: exactly one line is consumed.
		br := bufio.NewReader(strings.NewReader(tc.in + "END\r\n"))
		var rep Reply
		if err := ReadReply(br, tc.cmd, &rep, 1<<20); err != nil {
			t.Errorf("%v reply %q: %v", tc.cmd, tc.in, err)
			continue
		}
		if string(rep.Raw) != tc.in || len(rep.Values) != 0 || rep.Ended {
			t.Errorf("%v reply %q: Raw = %q, Values = %d, Ended = %v", tc.cmd, tc.in, rep.Raw, len(rep.Values), rep.Ended)
		}
		if rest, _ := br.ReadString('\n'); rest != "END\r\n" {
			t.Errorf("%v reply %q: left %q unread, want END", tc.cmd, tc.in, rest)
		}
	}
}

func TestReadReplyMalformed(t *testing.T) {
	long := strings.Repeat("x", 5000)
	tests := []struct {
		name string
		cmd  Command
		in   string
	}{
		{"single line ended by LF only", CmdSet, "STORED\n"},
		{"lone LF", CmdSet, "\n"},
		{"line longer than the buffer", CmdSet, "SERVER_ERROR " + long + "\r\n"},
		{"retrieval line ended by LF only", CmdGet, "END\n"},
		{"stats line ended by LF only", CmdStats, "STAT pid 1\n"},
		{"VALUE without bytes", CmdGet, "VALUE a 0\r\na\r\nEND\r\n"},
		{"VALUE without anything", CmdGet, "VALUE \r\nEND\r\n"},
		{"VALUE with too many fields", CmdGets, "VALUE a 0 1 2 3\r\na\r\nEND\r\n"},
		{"VALUE with non-numeric flags", CmdGet, "VALUE a x 1\r\na\r\nEND\r\n"},
		{"VALUE with signed bytes", CmdGet, "VALUE a 0 +1\r\na\r\nEND\r\n"},
		{"VALUE with flags over 32 bits", CmdGet, "VALUE a 4294967296 1\r\na\r\nEND\r\n"},
		{"VALUE with bytes over 64 bits", CmdGet, "VALUE a 0 18446744073709551616\r\nEND\r\n"},
		{"VALUE with non-numeric cas", CmdGets, "VALUE a 0 1 z\r\na\r\nEND\r\n"},
		{"VALUE with empty key", CmdGet, "VALUE  0 1\r\na\r\nEND\r\n"},
		{"data not ended by CRLF", CmdGet, "VALUE a 0 1\r\nabc\r\nEND\r\n"},
		{"data ended by LF only", CmdGet, "VALUE a 0 1\r\na\nEND\r\n"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if _, err := readReply(tc.in, tc.cmd); !errors.Is(err, ErrBadReply) {
				t.Errorf("ReadReply(%q) = %v, want ErrBadReply", tc.in, err)
			}
		})
	}
}

func TestReadReplySkipsValuesOverTheLimit(t *testing.T) {
	big := strings.Repeat("x", 1<<20+1)
	in := "VALUE a 0 1\r\na\r\nVALUE big 0 1048577\r\n" + big + "\r\nVALUE b 0 1\r\nb\r\nEND\r\nSTORED\r\n"
	br := bufio.NewReaderSize(strings.NewReader(in), 4096)
	var rep Reply
	if err := ReadReply(br, CmdGet, &rep, 1<<20); err != nil {
		t.Fatal(err)
	}
	if !rep.TooLarge || !rep.Ended || len(rep.Values) != 2 || string(rep.Raw) != "VALUE a 0 1\r\na\r\nVALUE b 0 1\r\nb\r\n" {
		t.Errorf("got TooLarge=%v Ended=%v %d values, Raw %q; want the two small values kept and the large one skipped",
			rep.TooLarge, rep.Ended, len(rep.Values), rep.Raw)
	}
	if err := ReadReply(br, CmdSet, &rep, 1<<20); err != nil || string(rep.Raw) != "STORED\r\n" {
		t.Errorf("next reply = %q, %v; want STORED: the connection must stay in step", rep.Raw, err)
	}
}

func TestReadReplyTruncated(t *testing.T) {
	tests := []struct {
		cmd  Command
		in   string
		want error
	}{
		{CmdSet, "", io.EOF},
		{CmdSet, "STORED", io.EOF},
		{CmdGet, "VALUE a 0 1\r\n", io.EOF},
		{CmdGet, "VALUE a 0 3\r\nab", io.ErrUnexpectedEOF},
		{CmdGet, "VALUE a 0 1\r\na\r\n", io.EOF},
		{CmdStats, "STAT pid 1\r\n", io.EOF},
	}
	for _, tc := range tests {
		if _, err := readReply(tc.in, tc.cmd); err != tc.want {
			t.Errorf("ReadReply(%q) = %v, want %v", tc.in, err, tc.want)
		}
	}
}

func TestAppendValueRoundTrip(t *testing.T) {
	want := []value{
		{Key: "a", Flags: 0, Data: "hello"},
		{Key: strings.Repeat("k", MaxKeyLength), Flags: 1<<32 - 1, Data: ""},
		{Key: "bin", Flags: 7, Data: "x\r\nEND\r\n\x00y"},
	}
	cas := []uint64{0, 1<<63 + 1, 1<<64 - 1}
	for _, withCas := range []bool{false, true} {
		var buf []byte
		for i := range want {
			w := &want[i]
			w.HasCas, w.Cas = withCas, 0
			if withCas {
				w.Cas = cas[i]
			}
			start := len(buf)
			buf = AppendValue(buf, []byte(w.Key), w.Flags, []byte(w.Data), w.Cas, withCas)
			w.Block = string(buf[start:])
		}
		if !withCas && !strings.HasPrefix(string(buf), "VALUE a 0 5\r\nhello\r\n") {
			t.Errorf("AppendValue wrote %q", buf[:20])
		}
		buf = append(buf, End...)
		rep, err := readReply(string(buf), CmdGets)
		if err != nil {
			t.Fatalf("withCas %v: ReadReply = %v", withCas, err)
		}
		if diff := cmp.Diff(values(rep), want); diff != "" {
			t.Errorf("withCas %v: mismatch (-got +want):\n%s", withCas, diff)
		}
		if !rep.Ended || string(rep.Raw)+string(End) != string(buf) {
			t.Errorf("withCas %v: Ended = %v, Raw = %q", withCas, rep.Ended, rep.Raw)
		}
	}
}

func TestAppendStat(t *testing.T) {
	if got, want := string(AppendStat([]byte("x"), "pid", "12")), "xSTAT pid 12\r\n"; got != want {
		t.Errorf("AppendStat = %q, want %q", got, want)
	}
}

func TestReadReplyReusesReplyAcrossPipelinedReplies(t *testing.T) {
	in := "VALUE a 0 3\r\nabc\r\nEND\r\nSTORED\r\nEND\r\nVALUE b 1 1 9\r\nz\r\nEND\r\n"
	br := bufio.NewReader(strings.NewReader(in))
	var rep Reply
	steps := []struct {
		cmd    Command
		raw    string
		values int
	}{
		{CmdGet, "VALUE a 0 3\r\nabc\r\n", 1},
		{CmdSet, "STORED\r\n", 0},
		{CmdGet, "", 0},
		{CmdGets, "VALUE b 1 1 9\r\nz\r\n", 1},
	}
	for i, s := range steps {
		if err := ReadReply(br, s.cmd, &rep, 1<<20); err != nil {
			t.Fatalf("reply %d: %v", i, err)
		}
		if string(rep.Raw) != s.raw || len(rep.Values) != s.values {
			t.Errorf("reply %d: Raw = %q with %d values, want %q with %d", i, rep.Raw, len(rep.Values), s.raw, s.values)
		}
	}
	if err := ReadReply(br, CmdGet, &rep, 1<<20); err != io.EOF {
		t.Errorf("after the last reply: %v, want io.EOF", err)
	}
}
