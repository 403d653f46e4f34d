package protocol

import (
	"bufio"
	"encoding/binary"
	"errors"
	"io"
	"os"
	"strings"
	"testing"
)

// binaryGet is a binary protocol get of key with opaque.
func binaryGet(key string, opaque uint32) string {
	var h [binaryHeaderLen]byte
	h[0] = binaryRequestMagic
	h[1] = 0x00 // get
	binary.BigEndian.PutUint16(h[2:4], uint16(len(key)))
	binary.BigEndian.PutUint32(h[8:12], uint32(len(key)))
	binary.BigEndian.PutUint32(h[12:16], opaque)
	return string(h[:]) + key
}

// TestBinaryRequestIsRefusedInTheBinaryProtocol: a request in memcached's
// binary protocol, after a text one, is answered with the binary
// protocol's "unknown command" response for its opcode and opaque, and
// marked to end the connection.
func TestBinaryRequestIsRefusedInTheBinaryProtocol(t *testing.T) {
	p := NewParser(bufio.NewReaderSize(strings.NewReader("get a\r\n"+binaryGet("k\n", 0xdeadbeef)), 4096))
	var req Request
	if err := p.Parse(&req); err != nil || req.Command != CmdGet || req.Close {
		t.Fatalf("text get before it: %v, command %v, close %v", err, req.Command, req.Close)
	}
	if err := p.Parse(&req); err != nil {
		t.Fatal(err)
	}
	if req.Command != CmdError || !req.Close || len(req.Reply) != binaryHeaderLen+len(binaryRefusalBody) {
		t.Fatalf("binary get: command %v, close %v, reply %q", req.Command, req.Close, req.Reply)
	}
	h := req.Reply
	if h[0] != binaryResponseMagic || h[1] != 0x00 || binary.BigEndian.Uint16(h[6:8]) != binaryUnknownCmd ||
		binary.BigEndian.Uint32(h[8:12]) != uint32(len(binaryRefusalBody)) || binary.BigEndian.Uint32(h[12:16]) != 0xdeadbeef ||
		string(h[binaryHeaderLen:]) != binaryRefusalBody {
		t.Errorf("response % x, want magic 81, opcode 00, status 0081, the body's length, opaque deadbeef, then %q", h[:binaryHeaderLen], binaryRefusalBody)
	}
}

// TestTruncatedBinaryHeaderEndsTheConnection: a binary request whose
// header the connection ends inside is io.EOF, as a text line cut short.
func TestTruncatedBinaryHeaderEndsTheConnection(t *testing.T) {
	p := NewParser(bufio.NewReaderSize(strings.NewReader(binaryGet("key", 1)[:10]), 4096))
	var req Request
	if err := p.Parse(&req); err != io.EOF {
		t.Fatalf("Parse of 10 bytes of a binary header = %v, want io.EOF", err)
	}
}

// countingReader fails every Read with err and counts them.
type countingReader struct {
	err   error
	reads int
}

func (r *countingReader) Read([]byte) (int, error) {
	r.reads++
	return 0, r.err
}

// TestAFailedReadEndsParseAtOnce: the read that finds no request fails
// Parse with its error, and no second read follows (a read deadline that
// passed must not be waited out twice: an idle connection is closed after
// idle_timeout, not two).
func TestAFailedReadEndsParseAtOnce(t *testing.T) {
	r := &countingReader{err: os.ErrDeadlineExceeded}
	p := NewParser(bufio.NewReaderSize(r, 4096))
	var req Request
	if err := p.Parse(&req); !errors.Is(err, os.ErrDeadlineExceeded) || r.reads != 1 {
		t.Fatalf("Parse = %v after %d reads, want the deadline after 1", err, r.reads)
	}
}
