package protocol

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

// The expectations in this file were checked against memcached 1.6.18
// (memcached -U 0), byte for byte: an error request's Reply is what memcached
// sends, and a nil Reply is memcached sending nothing.

// The error lines memcached sends, as tests expect them.
const (
	errLine      = "ERROR\r\n"
	badFormat    = "CLIENT_ERROR bad command line format\r\n"
	badExptime   = "CLIENT_ERROR invalid exptime argument\r\n"
	badDelta     = "CLIENT_ERROR invalid numeric delta argument\r\n"
	deleteUsage  = "CLIENT_ERROR bad command line format.  Usage: delete <key> [noreply]\r\n"
	badDataChunk = "CLIENT_ERROR bad data chunk\r\n"
	tooLarge     = "SERVER_ERROR object too large for cache\r\n"
	lineTooLong  = "CLIENT_ERROR line too long\r\n"
)

// parsed is the part of a Request a test compares. Reply "" means a nil
// Reply: for a CmdError request, memcached sends nothing.
type parsed struct {
	Cmd     Command
	Keys    []string
	Args    []string
	Flags   uint32
	Exptime int32
	Bytes   int
	Cas     uint64
	Delta   uint64
	Level   uint32
	NoReply bool
	Unlink  bool
	Fwd     string // AppendForward() of a valid request; Line of an error
	Value   string // Value(), storage commands only
	Reply   string
}

func snapshot(r *Request) parsed {
	p := parsed{
		Cmd: r.Command, Flags: r.Flags, Exptime: r.Exptime, Bytes: r.Bytes,
		Cas: r.Cas, Delta: r.Delta, Level: r.Level, NoReply: r.NoReply, Unlink: r.Unlink,
		Fwd: string(r.AppendForward(nil)), Reply: string(r.Reply),
	}
	if r.Command == CmdError {
		p.Fwd = string(r.Line)
	}
	for _, k := range r.Keys {
		p.Keys = append(p.Keys, string(k))
	}
	for _, a := range r.Args {
		p.Args = append(p.Args, string(a))
	}
	if r.Command.IsStorage() {
		p.Value = string(r.Value())
	}
	return p
}

// fails is the request memcached answers with reply (nothing when reply is
// ""), for the request line line.
func fails(reply, line string) parsed {
	return parsed{Cmd: CmdError, Reply: reply, Fwd: line}
}

// failsSilently is an error request with noreply: memcached sends nothing.
func failsSilently(line string) parsed {
	return parsed{Cmd: CmdError, NoReply: true, Fwd: line}
}

func keys(k ...string) []string { return k }

func newParser(in string, bufSize int) *Parser {
	return NewParser(bufio.NewReaderSize(strings.NewReader(in), bufSize))
}

// parseAll parses every request in in with one reused Request and returns
// them with the error that ended the stream.
func parseAll(p *Parser) ([]parsed, error) {
	var req Request
	var got []parsed
	for {
		err := p.Parse(&req)
		if err != nil {
			return got, err
		}
		checkRequestInvariants(&req)
		got = append(got, snapshot(&req))
		if len(got) > 10000 {
			return got, errors.New("too many requests")
		}
	}
}

type parseCase struct {
	name string
	in   string
	want []parsed
}

func runParseCases(t *testing.T, cases []parseCase) {
	t.Helper()
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			got, err := parseAll(newParser(tc.in, 16<<10))
			if err != io.EOF {
				t.Errorf("Parse(%q) ended with %v, want io.EOF", tc.in, err)
			}
			if diff := cmp.Diff(got, tc.want); diff != "" {
				t.Errorf("Parse(%q) mismatch (-got +want):\n%s", tc.in, diff)
			}
		})
	}
}

func TestParseRetrieval(t *testing.T) {
	k250 := strings.Repeat("k", 250)
	k251 := strings.Repeat("k", 251)
	many := make([]string, 30)
	for i := range many {
		many[i] = string(rune('a'+i%26)) + strings.Repeat("x", i/26)
	}
	runParseCases(t, []parseCase{
		{"get one key", "get k\r\n",
			[]parsed{{Cmd: CmdGet, Keys: keys("k"), Fwd: "get k"}}},
		{"get several keys", "get a b c\r\n",
			[]parsed{{Cmd: CmdGet, Keys: keys("a", "b", "c"), Fwd: "get a b c"}}},
		{"gets", "gets a b\r\n",
			[]parsed{{Cmd: CmdGets, Keys: keys("a", "b"), Fwd: "gets a b"}}},
		{"bget is get", "bget k\r\n",
			[]parsed{{Cmd: CmdGet, Keys: keys("k"), Fwd: "get k"}}},
		{"gat takes the exptime first", "gat 100 a b\r\n",
			[]parsed{{Cmd: CmdGat, Exptime: 100, Keys: keys("a", "b"), Fwd: "gat 100 a b"}}},
		{"gats with negative exptime", "gats -1 a\r\n",
			[]parsed{{Cmd: CmdGats, Exptime: -1, Keys: keys("a"), Fwd: "gats -1 a"}}},
		{"gat without keys is valid and answered END", "gat 0\r\n",
			[]parsed{{Cmd: CmdGat, Fwd: "gat 0"}}},
		{"gat exptime truncates to 32 bits", "gat 4294967296 k\r\n",
			[]parsed{{Cmd: CmdGat, Keys: keys("k"), Fwd: "gat 0 k"}}},
		{"get has no noreply: it is a key", "get k noreply\r\n",
			[]parsed{{Cmd: CmdGet, Keys: keys("k", "noreply"), Fwd: "get k noreply"}}},
		{"get keys beyond memcached's 24-token window", "get " + strings.Join(many, " ") + "\r\n",
			[]parsed{{Cmd: CmdGet, Keys: many, Fwd: "get " + strings.Join(many, " ")}}},
		{"get with LF only", "get k\n",
			[]parsed{{Cmd: CmdGet, Keys: keys("k"), Fwd: "get k"}}},
		{"leading, repeated and trailing spaces", "   get    a  b   \r\n",
			[]parsed{{Cmd: CmdGet, Keys: keys("a", "b"), Fwd: "get a b"}}},
		{"a tab is part of a key", "get a\tb\r\n",
			[]parsed{{Cmd: CmdGet, Keys: keys("a\tb"), Fwd: "get a\tb"}}},
		{"only the last CR is a terminator", "get a\r\r\n",
			[]parsed{{Cmd: CmdGet, Keys: keys("a\r"), Fwd: "get a\r"}}},
		{"a NUL byte ends the line", "get k\x00 junk\r\n",
			[]parsed{{Cmd: CmdGet, Keys: keys("k"), Fwd: "get k"}}},
		{"key of 250 bytes", "get " + k250 + "\r\n",
			[]parsed{{Cmd: CmdGet, Keys: keys(k250), Fwd: "get " + k250}}},
		{"key of 251 bytes", "get " + k251 + "\r\n",
			[]parsed{fails(badFormat, "get "+k251)}},
		{"key of 251 bytes after a valid key drops the whole get", "get a " + k251 + " b\r\n",
			[]parsed{fails(badFormat, "get a "+k251+" b")}},
		{"gat key of 251 bytes", "gat 1 " + k251 + "\r\n",
			[]parsed{{Cmd: CmdError, Exptime: 1, Fwd: "gat 1 " + k251, Reply: badFormat}}},
		{"get without key", "get\r\n", []parsed{fails(errLine, "get")}},
		{"get with only a space", "get \r\n", []parsed{fails(errLine, "get ")}},
		{"gets without key", "gets\r\n", []parsed{fails(errLine, "gets")}},
		{"bget without key", "bget\r\n", []parsed{fails(errLine, "bget")}},
		{"gat without exptime", "gat\r\n", []parsed{fails(errLine, "gat")}},
		{"gat with non-numeric exptime", "gat abc k\r\n",
			[]parsed{fails(badExptime, "gat abc k")}},
		{"gat with exptime out of long's range", "gat 99999999999999999999 k\r\n",
			[]parsed{fails(badExptime, "gat 99999999999999999999 k")}},
		{"gats with hex exptime", "gats 0x10 k\r\n",
			[]parsed{fails(badExptime, "gats 0x10 k")}},
	})
}

func TestParseStorage(t *testing.T) {
	k250 := strings.Repeat("k", 250)
	k251 := strings.Repeat("k", 251)
	// set is "set k <flags> <exptime> <bytes>" as parsed, forwarded in
	// canonical form.
	set := func(flags uint32, exptime int32, value string) parsed {
		return parsed{Cmd: CmdSet, Keys: keys("k"), Flags: flags, Exptime: exptime,
			Bytes: len(value), Fwd: fmt.Sprintf("set k %d %d %d", flags, exptime, len(value)), Value: value}
	}
	runParseCases(t, []parseCase{
		{"set", "set k 5 10 5\r\nhello\r\n",
			[]parsed{set(5, 10, "hello")}},
		{"add", "add k 0 0 1\r\na\r\n",
			[]parsed{{Cmd: CmdAdd, Keys: keys("k"), Bytes: 1, Fwd: "add k 0 0 1", Value: "a"}}},
		{"replace", "replace k 0 0 1\r\na\r\n",
			[]parsed{{Cmd: CmdReplace, Keys: keys("k"), Bytes: 1, Fwd: "replace k 0 0 1", Value: "a"}}},
		{"append", "append k 0 0 1\r\na\r\n",
			[]parsed{{Cmd: CmdAppend, Keys: keys("k"), Bytes: 1, Fwd: "append k 0 0 1", Value: "a"}}},
		{"prepend", "prepend k 0 0 1\r\na\r\n",
			[]parsed{{Cmd: CmdPrepend, Keys: keys("k"), Bytes: 1, Fwd: "prepend k 0 0 1", Value: "a"}}},
		{"cas", "cas k 1 2 3 99\r\nabc\r\n",
			[]parsed{{Cmd: CmdCas, Keys: keys("k"), Flags: 1, Exptime: 2, Bytes: 3, Cas: 99,
				Fwd: "cas k 1 2 3 99", Value: "abc"}}},
		{"cas with the largest cas value", "cas k 0 0 1 18446744073709551615\r\na\r\n",
			[]parsed{{Cmd: CmdCas, Keys: keys("k"), Bytes: 1, Cas: 1<<64 - 1,
				Fwd: "cas k 0 0 1 18446744073709551615", Value: "a"}}},
		{"set noreply is forwarded without noreply", "set k 0 0 5 noreply\r\nhello\r\n",
			[]parsed{{Cmd: CmdSet, Keys: keys("k"), Bytes: 5, NoReply: true, Fwd: "set k 0 0 5", Value: "hello"}}},
		{"set noreply with extra spaces", "set k 0 0 1   noreply  \r\na\r\n",
			[]parsed{{Cmd: CmdSet, Keys: keys("k"), Bytes: 1, NoReply: true, Fwd: "set k 0 0 1", Value: "a"}}},
		{"cas noreply", "cas k 0 0 1 7 noreply\r\na\r\n",
			[]parsed{{Cmd: CmdCas, Keys: keys("k"), Bytes: 1, Cas: 7, NoReply: true, Fwd: "cas k 0 0 1 7", Value: "a"}}},
		{"append noreply", "append k 0 0 1 noreply\r\na\r\n",
			[]parsed{{Cmd: CmdAppend, Keys: keys("k"), Bytes: 1, NoReply: true, Fwd: "append k 0 0 1", Value: "a"}}},
		{"empty value", "set k 0 0 0\r\n\r\n",
			[]parsed{set(0, 0, "")}},
		{"value holding CR, LF and NUL", "set k 0 0 5\r\na\r\n\x00b\r\n",
			[]parsed{set(0, 0, "a\r\n\x00b")}},
		{"LF-terminated command line", "set k 0 0 1\na\r\n",
			[]parsed{set(0, 0, "a")}},
		{"multiple spaces between tokens", "set  k   1  2   1\r\na\r\n",
			[]parsed{set(1, 2, "a")}},
		{"leading spaces", "  set k 0 0 1\r\na\r\n",
			[]parsed{set(0, 0, "a")}},
		{"a NUL byte ends the command line", "set k 0 0 1\x00 junk\r\na\r\n",
			[]parsed{set(0, 0, "a")}},
		{"key of 250 bytes", "set " + k250 + " 0 0 1\r\na\r\n",
			[]parsed{{Cmd: CmdSet, Keys: keys(k250), Bytes: 1, Fwd: "set " + k250 + " 0 0 1", Value: "a"}}},
		{"key of 251 bytes leaves the data to be parsed as a command", "set " + k251 + " 0 0 1\r\na\r\n",
			[]parsed{fails(badFormat, "set "+k251+" 0 0 1"), fails(errLine, "a")}},
		{"key of 251 bytes with noreply", "set " + k251 + " 0 0 1 noreply\r\nab\r\n",
			[]parsed{failsSilently("set " + k251 + " 0 0 1 noreply"), fails(errLine, "ab")}},

		// Numbers follow C's strtoul/strtol and memcached's end check.
		{"flags with plus sign", "set k +5 0 1\r\na\r\n", []parsed{set(5, 0, "a")}},
		{"flags minus zero", "set k -0 0 1\r\na\r\n", []parsed{set(0, 0, "a")}},
		{"flags minus one", "set k -1 0 1\r\na\r\n",
			[]parsed{fails(badFormat, "set k -1 0 1"), fails(errLine, "a")}},
		{"flags 2^32 truncates to 0", "set k 4294967296 0 1\r\na\r\n",
			[]parsed{set(0, 0, "a")}},
		{"flags 2^32+1 truncates to 1", "set k 4294967297 0 1\r\na\r\n",
			[]parsed{set(1, 0, "a")}},
		{"flags 2^64 overflows", "set k 18446744073709551616 0 1\r\na\r\n",
			[]parsed{fails(badFormat, "set k 18446744073709551616 0 1"), fails(errLine, "a")}},
		{"flags minus (2^64-1) wraps to 1", "set k -18446744073709551615 0 1\r\na\r\n",
			[]parsed{set(1, 0, "a")}},
		{"flags followed by a tab", "set k 5\t 0 1\r\na\r\n", []parsed{set(5, 0, "a")}},
		{"flags preceded by a tab", "set k \t5 0 1\r\na\r\n", []parsed{set(5, 0, "a")}},
		{"hex flags", "set k 0x10 0 1\r\na\r\n",
			[]parsed{fails(badFormat, "set k 0x10 0 1"), fails(errLine, "a")}},
		{"non-numeric exptime", "set k 0 abc 1\r\na\r\n",
			[]parsed{fails(badFormat, "set k 0 abc 1"), fails(errLine, "a")}},
		{"negative exptime", "set k 0 -5 1\r\na\r\n", []parsed{set(0, -5, "a")}},
		{"exptime 2^31 truncates to a negative int32", "set k 0 2147483648 1\r\na\r\n",
			[]parsed{set(0, -1<<31, "a")}},
		{"exptime 2^63 overflows long", "set k 0 9223372036854775808 1\r\na\r\n",
			[]parsed{fails(badFormat, "set k 0 9223372036854775808 1"), fails(errLine, "a")}},
		{"exptime -2^63 fits long and truncates to 0", "set k 0 -9223372036854775808 1\r\na\r\n",
			[]parsed{set(0, 0, "a")}},
		{"bytes followed by a tab", "set k 0 0 1\t\r\na\r\n", []parsed{set(0, 0, "a")}},
		{"bytes 2^32+1 truncates to 1", "set k 0 0 4294967297\r\na\r\n",
			[]parsed{set(0, 0, "a")}},
		{"negative bytes leave the data to be parsed as a command", "set k 0 0 -1\r\na\r\n",
			[]parsed{fails(badFormat, "set k 0 0 -1"), fails(errLine, "a")}},
		{"bytes above INT_MAX-2", "set k 0 0 2147483646\r\n",
			[]parsed{fails(badFormat, "set k 0 0 2147483646")}},
		{"non-numeric cas", "cas k 0 0 1 abc\r\na\r\n",
			[]parsed{fails(badFormat, "cas k 0 0 1 abc"), fails(errLine, "a")}},
		{"negative cas", "cas k 0 0 1 -1\r\na\r\n",
			[]parsed{fails(badFormat, "cas k 0 0 1 -1"), fails(errLine, "a")}},
		{"non-numeric cas with noreply", "cas k 0 0 1 abc noreply\r\na\r\n",
			[]parsed{failsSilently("cas k 0 0 1 abc noreply"), fails(errLine, "a")}},
		{"noreply in place of bytes suppresses the error", "set k 0 0 noreply\r\nversion\r\n",
			[]parsed{failsSilently("set k 0 0 noreply"), {Cmd: CmdVersion, Fwd: "version"}}},

		// Token counts.
		{"set with too few tokens", "set k 0 0\r\n", []parsed{fails(errLine, "set k 0 0")}},
		{"set with too many tokens", "set k 0 0 1 2 3\r\na\r\n",
			[]parsed{fails(errLine, "set k 0 0 1 2 3"), fails(errLine, "a")}},
		{"cas without cas value", "cas k 0 0 1\r\n", []parsed{fails(errLine, "cas k 0 0 1")}},
		{"cas with too many tokens", "cas k 0 0 1 2 3 4\r\n", []parsed{fails(errLine, "cas k 0 0 1 2 3 4")}},

		// Data blocks.
		{"data block not ended by CRLF", "set k 0 0 1\r\nabc\r\nget k\r\n",
			[]parsed{
				{Cmd: CmdError, Keys: keys("k"), Bytes: 1, Fwd: "set k 0 0 1", Reply: badDataChunk},
				fails(errLine, "\r"),
				{Cmd: CmdGet, Keys: keys("k"), Fwd: "get k"},
			}},
		{"bad data chunk with noreply is silent", "set k 0 0 1 noreply\r\nabc\r\nget k\r\n",
			[]parsed{
				{Cmd: CmdError, Keys: keys("k"), Bytes: 1, NoReply: true, Fwd: "set k 0 0 1 noreply"},
				fails(errLine, "\r"),
				{Cmd: CmdGet, Keys: keys("k"), Fwd: "get k"},
			}},
		{"data block ended by LF only", "set k 0 0 1\r\na\nget k\r\n",
			[]parsed{
				{Cmd: CmdError, Keys: keys("k"), Bytes: 1, Fwd: "set k 0 0 1", Reply: badDataChunk},
				{Cmd: CmdError, Fwd: "et k", Reply: errLine},
			}},
	})
}

func TestParseOtherCommands(t *testing.T) {
	k251 := strings.Repeat("k", 251)
	runParseCases(t, []parseCase{
		{"delete", "delete k\r\n", []parsed{{Cmd: CmdDelete, Keys: keys("k"), Fwd: "delete k"}}},
		{"delete noreply", "delete k noreply\r\n",
			[]parsed{{Cmd: CmdDelete, Keys: keys("k"), NoReply: true, Fwd: "delete k"}}},
		{"delete with hold time 0", "delete k 0\r\n",
			[]parsed{{Cmd: CmdDelete, Keys: keys("k"), Fwd: "delete k"}}},
		{"delete with hold time 0 and noreply", "delete k 0 noreply\r\n",
			[]parsed{{Cmd: CmdDelete, Keys: keys("k"), NoReply: true, Fwd: "delete k"}}},
		{"delete with non-zero hold time", "delete k 1\r\n", []parsed{fails(deleteUsage, "delete k 1")}},
		{"delete with two zeros", "delete k 0 0\r\n", []parsed{fails(deleteUsage, "delete k 0 0")}},
		{"delete usage error with noreply is silent", "delete k 1 noreply\r\n",
			[]parsed{failsSilently("delete k 1 noreply")}},
		{"delete with too many tokens", "delete k x y z\r\n", []parsed{fails(errLine, "delete k x y z")}},
		{"delete without key", "delete\r\n", []parsed{fails(errLine, "delete")}},
		{"delete key of 251 bytes", "delete " + k251 + "\r\n", []parsed{fails(badFormat, "delete "+k251)}},
		{"delete key of 251 bytes with noreply", "delete " + k251 + " noreply\r\n",
			[]parsed{failsSilently("delete " + k251 + " noreply")}},

		{"incr", "incr k 5\r\n", []parsed{{Cmd: CmdIncr, Keys: keys("k"), Delta: 5, Fwd: "incr k 5"}}},
		{"decr by the largest delta", "decr k 18446744073709551615\r\n",
			[]parsed{{Cmd: CmdDecr, Keys: keys("k"), Delta: 1<<64 - 1, Fwd: "decr k 18446744073709551615"}}},
		{"incr noreply", "incr k 1 noreply\r\n",
			[]parsed{{Cmd: CmdIncr, Keys: keys("k"), Delta: 1, NoReply: true, Fwd: "incr k 1"}}},
		{"incr with non-numeric delta", "incr k abc\r\n", []parsed{fails(badDelta, "incr k abc")}},
		{"incr with negative delta", "incr k -1\r\n", []parsed{fails(badDelta, "incr k -1")}},
		{"incr with delta 2^64", "incr k 18446744073709551616\r\n",
			[]parsed{fails(badDelta, "incr k 18446744073709551616")}},
		{"incr bad delta with noreply is silent", "incr k abc noreply\r\n",
			[]parsed{failsSilently("incr k abc noreply")}},
		{"incr with noreply in place of delta is silent", "incr k noreply\r\n",
			[]parsed{failsSilently("incr k noreply")}},
		{"incr without delta", "incr k\r\n", []parsed{fails(errLine, "incr k")}},
		{"incr with too many tokens", "incr k 1 2 3\r\n", []parsed{fails(errLine, "incr k 1 2 3")}},
		{"incr key of 251 bytes", "incr " + k251 + " 1\r\n", []parsed{fails(badFormat, "incr "+k251+" 1")}},

		{"touch", "touch k 10\r\n", []parsed{{Cmd: CmdTouch, Keys: keys("k"), Exptime: 10, Fwd: "touch k 10"}}},
		{"touch noreply", "touch k 10 noreply\r\n",
			[]parsed{{Cmd: CmdTouch, Keys: keys("k"), Exptime: 10, NoReply: true, Fwd: "touch k 10"}}},
		{"touch with non-numeric exptime", "touch k abc\r\n", []parsed{fails(badExptime, "touch k abc")}},
		{"touch bad exptime with noreply is silent", "touch k abc noreply\r\n",
			[]parsed{failsSilently("touch k abc noreply")}},
		{"touch without exptime", "touch k\r\n", []parsed{fails(errLine, "touch k")}},
		{"touch key of 251 bytes", "touch " + k251 + " 1\r\n", []parsed{fails(badFormat, "touch "+k251+" 1")}},

		{"flush_all", "flush_all\r\n", []parsed{{Cmd: CmdFlushAll, Fwd: "flush_all"}}},
		{"flush_all with delay", "flush_all 10\r\n", []parsed{{Cmd: CmdFlushAll, Exptime: 10, Fwd: "flush_all 10"}}},
		{"flush_all with negative delay", "flush_all -1\r\n",
			[]parsed{{Cmd: CmdFlushAll, Exptime: -1, Fwd: "flush_all -1"}}},
		{"flush_all noreply", "flush_all noreply\r\n",
			[]parsed{{Cmd: CmdFlushAll, NoReply: true, Fwd: "flush_all"}}},
		{"flush_all with delay and noreply", "flush_all 10 noreply\r\n",
			[]parsed{{Cmd: CmdFlushAll, Exptime: 10, NoReply: true, Fwd: "flush_all 10"}}},
		{"flush_all ignores a third token", "flush_all 0 junk\r\n",
			[]parsed{{Cmd: CmdFlushAll, Fwd: "flush_all"}}},
		{"flush_all with non-numeric delay", "flush_all abc\r\n", []parsed{fails(badExptime, "flush_all abc")}},
		{"flush_all bad delay with noreply is silent", "flush_all abc noreply\r\n",
			[]parsed{failsSilently("flush_all abc noreply")}},
		{"flush_all with too many tokens", "flush_all 1 2 3\r\n", []parsed{fails(errLine, "flush_all 1 2 3")}},

		{"version", "version\r\n", []parsed{{Cmd: CmdVersion, Fwd: "version"}}},
		{"version ignores arguments", "version foo\r\n", []parsed{{Cmd: CmdVersion, Fwd: "version"}}},
		{"verbosity", "verbosity 1\r\n", []parsed{{Cmd: CmdVerbosity, Level: 1, Fwd: "verbosity 1"}}},
		{"verbosity noreply", "verbosity 1 noreply\r\n",
			[]parsed{{Cmd: CmdVerbosity, Level: 1, NoReply: true, Fwd: "verbosity 1"}}},
		{"verbosity ignores a second argument", "verbosity 1 2\r\n",
			[]parsed{{Cmd: CmdVerbosity, Level: 1, Fwd: "verbosity 1"}}},
		{"verbosity with non-numeric level", "verbosity abc\r\n", []parsed{fails(badFormat, "verbosity abc")}},
		{"verbosity with only noreply is silent", "verbosity noreply\r\n",
			[]parsed{failsSilently("verbosity noreply")}},
		{"verbosity without level", "verbosity\r\n", []parsed{fails(errLine, "verbosity")}},
		{"stats", "stats\r\n", []parsed{{Cmd: CmdStats, Fwd: "stats"}}},
		{"stats with arguments", "stats slabs  foo\r\n",
			[]parsed{{Cmd: CmdStats, Args: keys("slabs", "foo"), Fwd: "stats slabs foo"}}},
		{"quit", "quit\r\n", []parsed{{Cmd: CmdQuit, Fwd: "quit"}}},
		{"quit ignores arguments", "quit now\r\n", []parsed{{Cmd: CmdQuit, Fwd: "quit"}}},

		{"unknown command", "foo bar\r\n", []parsed{fails(errLine, "foo bar")}},
		// memcached drops a CR only with at least one byte before it.
		{"CR LF is a one-byte line", "\r\n", []parsed{fails(errLine, "\r")}},
		{"empty LF line", "\n", []parsed{fails(errLine, "")}},
		{"CR CR LF is a one-byte line", "\r\r\n", []parsed{fails(errLine, "\r")}},
		{"spaces only", "   \r\n", []parsed{fails(errLine, "   ")}},
		{"one-char command", "g k\r\n", []parsed{fails(errLine, "g k")}},
		{"one-char command ending in HTTP/1.1", "x HTTP/1.1\r\n", []parsed{fails(errLine, "x HTTP/1.1")}},
		{"commands are case-sensitive", "GET k\r\n", []parsed{fails(errLine, "GET k")}},
		{"a tab does not separate tokens", "get\tk\r\n", []parsed{fails(errLine, "get\tk")}},
		{"a NUL byte first empties the line", "\x00get k\r\n", []parsed{fails(errLine, "")}},
		{"meta commands are unknown to the proxy", "mg k v\r\n",
			[]parsed{fails(errLine, "mg k v")}},

		// memcached checks for HTTP only for names it does not dispatch on
		// their first byte.
		{"unknown g-command ending in HTTP/1.1", "gxx / HTTP/1.1\r\n", []parsed{fails(errLine, "gxx / HTTP/1.1")}},
		{"unknown s-command ending in HTTP/1.1", "sxx / HTTP/1.1\r\n", []parsed{fails(errLine, "sxx / HTTP/1.1")}},
		{"unknown t-command ending in HTTP/1.1", "txx HTTP/1.1\r\n", []parsed{fails(errLine, "txx HTTP/1.1")}},
		{"two-byte m-command ending in HTTP/1.1", "mx HTTP/1.1\r\n", []parsed{fails(errLine, "mx HTTP/1.1")}},
		{"lru_crawler ending in HTTP/1.1", "lru_crawler HTTP/1.1\r\n",
			[]parsed{fails(errLine, "lru_crawler HTTP/1.1")}},
		{"HTTP/ not the last token", "zz HTTP/1.0 x\r\n", []parsed{fails(errLine, "zz HTTP/1.0 x")}},
		{"lower-case http/", "zz http/1.1\r\n", []parsed{fails(errLine, "zz http/1.1")}},
		{"HTTP/ beyond the 23rd token is not seen", "zz HTTP/1.1 a b c d e f g h i j k l m n o p q r s t u v w\r\n",
			[]parsed{fails(errLine, "zz HTTP/1.1 a b c d e f g h i j k l m n o p q r s t u v w")}},
	})
}

func TestParseClosesOnHTTPRequest(t *testing.T) {
	for _, in := range []string{
		"GET / HTTP/1.1\r\n",
		"POST /x HTTP/1.0\r\n",
		"HTTP/1.1\r\n",
		"zxx HTTP/1.1\r\n",
		"mxx HTTP/1.1\r\n",
		"zz HTTP/\r\n",
		"zz HTTP/1.1x\r\n",
		"zz  HTTP/1.1  \r\n",
		"zz HTTP/1.1\x00 x\r\n",
		// The 23rd token is the last one memcached's tokenizer counts.
		"zz 1 2 3 4 5 6 7 8 9 10 11 12 13 14 15 16 17 18 19 20 21 HTTP/1.1 w\r\n",
	} {
		var req Request
		if err := newParser(in, 16<<10).Parse(&req); err != ErrHTTP {
			t.Errorf("Parse(%q) = %v, want ErrHTTP", in, err)
		}
	}
}

func TestParseSwallowsItemLargerThanMaxItemSize(t *testing.T) {
	tests := []struct {
		name string
		in   string
		want []parsed
	}{
		{"too large", "set k 0 0 11\r\n0123456789a\r\nget k\r\n", []parsed{
			{Cmd: CmdError, Keys: keys("k"), Bytes: 11, Unlink: true, Fwd: "set k 0 0 11", Reply: tooLarge},
			{Cmd: CmdGet, Keys: keys("k"), Fwd: "get k"},
		}},
		{"too large with noreply is silent", "set k 0 0 11 noreply\r\n0123456789a\r\nget k\r\n", []parsed{
			{Cmd: CmdError, Keys: keys("k"), Bytes: 11, NoReply: true, Unlink: true, Fwd: "set k 0 0 11 noreply"},
			{Cmd: CmdGet, Keys: keys("k"), Fwd: "get k"},
		}},
		{"swallowed whatever the bytes are", "set k 0 0 11\r\n0123456789a\n\nget k\r\n", []parsed{
			{Cmd: CmdError, Keys: keys("k"), Bytes: 11, Unlink: true, Fwd: "set k 0 0 11", Reply: tooLarge},
			{Cmd: CmdGet, Keys: keys("k"), Fwd: "get k"},
		}},
		{"too large an add leaves the old value", "add k 0 0 11\r\n0123456789a\r\n", []parsed{
			{Cmd: CmdError, Keys: keys("k"), Bytes: 11, Fwd: "add k 0 0 11", Reply: tooLarge},
		}},
		{"exactly MaxItemSize is accepted", "set k 0 0 10\r\n0123456789\r\n", []parsed{
			{Cmd: CmdSet, Keys: keys("k"), Bytes: 10, Fwd: "set k 0 0 10", Value: "0123456789"},
		}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			p := newParser(tc.in, 16<<10)
			p.MaxItemSize = 10
			got, err := parseAll(p)
			if err != io.EOF {
				t.Errorf("Parse ended with %v, want io.EOF", err)
			}
			if diff := cmp.Diff(got, tc.want); diff != "" {
				t.Errorf("mismatch (-got +want):\n%s", diff)
			}
		})
	}
}

func TestParseDefaultMaxItemSizeIsOneMegabyte(t *testing.T) {
	var req Request
	p := newParser("set k 0 0 1048577\r\n", 16<<10)
	// The data is missing: the parser tries to swallow it and meets EOF.
	if err := p.Parse(&req); err != io.EOF {
		t.Fatalf("Parse = %v, want io.EOF", err)
	}
	if string(req.Reply) != tooLarge {
		t.Errorf("Reply = %q, want %q", req.Reply, tooLarge)
	}
}

func TestParseTruncatedInput(t *testing.T) {
	tests := []struct {
		in   string
		want error
	}{
		{"", io.EOF},
		{"get k", io.EOF}, // no terminator: memcached waits for it
		{"set k 0 0 5\r\nhel", io.ErrUnexpectedEOF},
		{"set k 0 0 5\r\n", io.EOF},
	}
	for _, tc := range tests {
		var req Request
		if err := newParser(tc.in, 16<<10).Parse(&req); err != tc.want {
			t.Errorf("Parse(%q) = %v, want %v", tc.in, err, tc.want)
		}
	}
}

// longGet returns a get line of at least n bytes (terminator excluded) and
// its keys.
func longGet(n int) (string, []string) {
	var b strings.Builder
	b.WriteString("get")
	var ks []string
	for i := 0; b.Len() < n; i++ {
		k := strings.Repeat("k", 9) + string(rune('a'+i%26))
		ks = append(ks, k)
		b.WriteString(" " + k)
	}
	return b.String(), ks
}

func TestParseNonGetLineLongerThanBufferClosesConnection(t *testing.T) {
	long := strings.Repeat("x", 3*MinBufferSize)
	for _, in := range []string{
		"set " + long + " 0 0 1\r\na\r\n",
		"gat 0 " + long + "\r\n",
		"bget " + long + "\r\n",
		"getx " + long + "\r\n",
		strings.Repeat(" ", 101) + "get " + long + "\r\n",
	} {
		var req Request
		if err := newParser(in, MinBufferSize).Parse(&req); err != ErrLineTooLong {
			t.Errorf("Parse(%.20q...) = %v, want ErrLineTooLong", in, err)
		}
	}
}

func TestParseGetLineLongerThanBuffer(t *testing.T) {
	line, ks := longGet(5 * MinBufferSize)
	for _, prefix := range []string{"", strings.Repeat(" ", 100)} {
		for _, eol := range []string{"\r\n", "\n"} {
			in := prefix + line + eol + "gets " + line[4:] + eol + "version\r\n"
			got, err := parseAll(newParser(in, MinBufferSize))
			if err != io.EOF {
				t.Errorf("Parse ended with %v, want io.EOF", err)
			}
			want := []parsed{
				{Cmd: CmdGet, Keys: ks, Fwd: line},
				{Cmd: CmdGets, Keys: ks, Fwd: "gets " + line[4:]},
				{Cmd: CmdVersion, Fwd: "version"},
			}
			if diff := cmp.Diff(got, want); diff != "" {
				t.Errorf("prefix %d spaces, eol %q: mismatch (-got +want):\n%s", len(prefix), eol, diff)
			}
		}
	}
}

func TestParseLongGetLineWithKeyOf251Bytes(t *testing.T) {
	line := "get " + strings.Repeat("x", 3000)
	got, err := parseAll(newParser(line+"\r\nversion\r\n", MinBufferSize))
	if err != io.EOF {
		t.Errorf("Parse ended with %v, want io.EOF", err)
	}
	want := []parsed{fails(badFormat, line), {Cmd: CmdVersion, Fwd: "version"}}
	if diff := cmp.Diff(got, want); diff != "" {
		t.Errorf("mismatch (-got +want):\n%s", diff)
	}
}

func TestParseGetLineOverMaxLineLengthIsDiscarded(t *testing.T) {
	line, _ := longGet(DefaultMaxLineLength + 1)
	for _, eol := range []string{"\r\n", "\n"} {
		got, err := parseAll(newParser(line+eol+"get k\r\n", MinBufferSize))
		if err != io.EOF {
			t.Errorf("Parse ended with %v, want io.EOF", err)
		}
		want := []parsed{fails(lineTooLong, ""), {Cmd: CmdGet, Keys: keys("k"), Fwd: "get k"}}
		if diff := cmp.Diff(got, want); diff != "" {
			t.Errorf("eol %q: mismatch (-got +want):\n%s", eol, diff)
		}
	}
}

func TestParseMaxLineLengthBoundary(t *testing.T) {
	const max = 3 * MinBufferSize
	line, _ := longGet(max)
	line = line[:max] // exactly max bytes, the last key possibly cut short
	for _, eol := range []string{"\r\n", "\n"} {
		for _, tc := range []struct {
			line string
			ok   bool
		}{{line, true}, {line + "z", false}} {
			p := newParser(tc.line+eol+"version\r\n", MinBufferSize)
			p.MaxLineLength = max
			var req Request
			if err := p.Parse(&req); err != nil {
				t.Fatalf("Parse = %v", err)
			}
			if ok := req.Command == CmdGet; ok != tc.ok {
				t.Errorf("line of %d bytes ended by %q: accepted = %v, want %v (reply %q)",
					len(tc.line), eol, ok, tc.ok, req.Reply)
			}
			if tc.ok && string(req.Line) != tc.line {
				t.Errorf("line of %d bytes ended by %q: Line has %d bytes", len(tc.line), eol, len(req.Line))
			}
			if err := p.Parse(&req); err != nil || req.Command != CmdVersion {
				t.Errorf("next request: %v %v, want version", req.Command, err)
			}
		}
	}
}

func TestParseMaxLineLengthAppliesWithinTheBuffer(t *testing.T) {
	line, _ := longGet(3000) // fits the 16 KiB buffer
	p := newParser(line+"\r\nget k\r\n", 16<<10)
	p.MaxLineLength = 2048
	got, err := parseAll(p)
	if err != io.EOF {
		t.Errorf("Parse ended with %v, want io.EOF", err)
	}
	want := []parsed{fails(lineTooLong, ""), {Cmd: CmdGet, Keys: keys("k"), Fwd: "get k"}}
	if diff := cmp.Diff(got, want); diff != "" {
		t.Errorf("mismatch (-got +want):\n%s", diff)
	}
}

func TestParsePipelinedRequestsFromOneReader(t *testing.T) {
	in := "get a b\r\n" +
		"set k 1 2 3 noreply\r\nabc\r\n" +
		"bogus\r\n" +
		"cas k 0 0 2 5\nxy\r\n" +
		"delete k\r\n" +
		"incr n 7 noreply\r\n" +
		"set k 0 0 1\r\nabc\r\n" + // bad data chunk: "\r" is then a line
		"gats 9 z\n" +
		"touch t -1\r\n" +
		"stats items\r\n" +
		"flush_all 5\r\n" +
		"version\r\n" +
		"quit\r\n"
	want := []parsed{
		{Cmd: CmdGet, Keys: keys("a", "b"), Fwd: "get a b"},
		{Cmd: CmdSet, Keys: keys("k"), Flags: 1, Exptime: 2, Bytes: 3, NoReply: true, Fwd: "set k 1 2 3", Value: "abc"},
		fails(errLine, "bogus"),
		{Cmd: CmdCas, Keys: keys("k"), Bytes: 2, Cas: 5, Fwd: "cas k 0 0 2 5", Value: "xy"},
		{Cmd: CmdDelete, Keys: keys("k"), Fwd: "delete k"},
		{Cmd: CmdIncr, Keys: keys("n"), Delta: 7, NoReply: true, Fwd: "incr n 7"},
		{Cmd: CmdError, Keys: keys("k"), Bytes: 1, Fwd: "set k 0 0 1", Reply: badDataChunk},
		fails(errLine, "\r"),
		{Cmd: CmdGats, Keys: keys("z"), Exptime: 9, Fwd: "gats 9 z"},
		{Cmd: CmdTouch, Keys: keys("t"), Exptime: -1, Fwd: "touch t -1"},
		{Cmd: CmdStats, Args: keys("items"), Fwd: "stats items"},
		{Cmd: CmdFlushAll, Exptime: 5, Fwd: "flush_all 5"},
		{Cmd: CmdVersion, Fwd: "version"},
		{Cmd: CmdQuit, Fwd: "quit"},
	}
	for _, size := range []int{MinBufferSize, 16 << 10} {
		// A one-byte-at-a-time source proves nothing depends on how reads
		// are split.
		for _, src := range []io.Reader{strings.NewReader(in), &oneByteReader{s: in}} {
			got, err := parseAll(NewParser(bufio.NewReaderSize(src, size)))
			if err != io.EOF {
				t.Errorf("Parse ended with %v, want io.EOF", err)
			}
			if diff := cmp.Diff(got, want); diff != "" {
				t.Errorf("buffer %d, %T: mismatch (-got +want):\n%s", size, src, diff)
			}
		}
	}
}

type oneByteReader struct{ s string }

func (r *oneByteReader) Read(p []byte) (int, error) {
	if len(r.s) == 0 {
		return 0, io.EOF
	}
	if len(p) == 0 {
		return 0, nil
	}
	p[0] = r.s[0]
	r.s = r.s[1:]
	return 1, nil
}

func TestRequestForwardIsCanonical(t *testing.T) {
	cases := []struct{ in, line, fwd string }{
		{"set k 0 0 1 noreply\r\na\r\n", "set k 0 0 1 noreply", "set k 0 0 1"},
		{"  set   k 007 -0 1  \r\na\r\n", "  set   k 007 -0 1  ", "set k 7 0 1"},
		{"incr k " + strings.Repeat("0", 5000) + "12" + strings.Repeat(" ", 9000) + "\r\n", "", "incr k 12"},
		{"touch k 4294967297\r\n", "touch k 4294967297", "touch k 1"},
		{"delete k 0 noreply\r\n", "delete k 0 noreply", "delete k"},
		{"flush_all 0\r\n", "flush_all 0", "flush_all"},
		{"flush_all -5 noreply\r\n", "flush_all -5 noreply", "flush_all -5"},
		{"verbosity 0001\r\n", "verbosity 0001", "verbosity 1"},
		{"bget a  b\r\n", "bget a  b", "get a b"},
		{"gats 0x1 k\r\n", "gats 0x1 k", ""}, // an error: not forwarded
	}
	for _, tc := range cases {
		var req Request
		p := newParser(tc.in, 16<<10)
		if err := p.Parse(&req); err != nil {
			t.Fatalf("Parse(%q): %v", tc.in, err)
		}
		if tc.line != "" && string(req.Line) != tc.line {
			t.Errorf("Parse(%q): Line = %q, want %q", tc.in, req.Line, tc.line)
		}
		if req.Command == CmdError {
			if tc.fwd != "" {
				t.Errorf("Parse(%q) failed with %q", tc.in, req.Reply)
			}
			continue
		}
		if got := string(req.AppendForward(nil)); got != tc.fwd {
			t.Errorf("Parse(%q): AppendForward = %q, want %q", tc.in, got, tc.fwd)
		}
	}
}

// checkRequestInvariants panics when req breaks a promise every parsed
// Request keeps; tests and the fuzzer share it.
func checkRequestInvariants(req *Request) {
	if req.Command != CmdError && !req.Command.IsRetrieval() && len(req.AppendForward(nil)) > MaxForwardLine {
		panic("a forwarded line longer than MaxForwardLine")
	}
	if req.Command == CmdError {
		if req.NoReply && req.Reply != nil {
			panic("error reply despite noreply")
		}
		if !req.NoReply && req.Reply == nil {
			panic("CmdError without reply and without noreply")
		}
		return
	}
	if req.Command >= numCommands {
		panic("invalid command")
	}
	if req.Reply != nil {
		panic("reply on a valid request")
	}
	for _, k := range req.Keys {
		if len(k) == 0 || len(k) > MaxKeyLength {
			panic("key length out of range")
		}
	}
	if req.Command.IsStorage() {
		if len(req.Keys) != 1 {
			panic("storage command without exactly one key")
		}
		n := len(req.Data)
		if n != req.Bytes+2 || req.Data[n-2] != '\r' || req.Data[n-1] != '\n' {
			panic("storage data is not Bytes+2 bytes ending in CRLF")
		}
	}
}
