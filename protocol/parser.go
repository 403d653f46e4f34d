package protocol

import (
	"bufio"
	"bytes"
	"errors"
	"io"
)

// Errors a Parser returns. After either, the connection must be closed, as
// memcached closes it.
var (
	// ErrLineTooLong is returned for a request line that does not end within
	// the reader's buffer and is not a get or gets (memcached's rule).
	ErrLineTooLong = errors.New("protocol: request line too long")
	// ErrHTTP is returned for an unknown command whose last token starts
	// with "HTTP/": memcached closes such connections.
	ErrHTTP = errors.New("protocol: HTTP request on the memcached port")
)

// Defaults for Parser's limits.
const (
	// DefaultMaxItemSize is memcached's default item size limit (-I 1m).
	DefaultMaxItemSize = 1 << 20
	// DefaultMaxLineLength bounds a get/gets line that does not fit in the
	// reader's buffer.
	DefaultMaxLineLength = 64 << 10
	// MinBufferSize is the smallest reader buffer a Parser accepts: memcached
	// closes a connection whose non-get line passes 2048 bytes unterminated.
	MinBufferSize = 2048
)

// Parser reads requests from a buffered reader. A Parser is not safe for
// concurrent use.
type Parser struct {
	r *bufio.Reader
	// MaxItemSize is the largest data block accepted; a larger one is
	// answered "SERVER_ERROR object too large for cache" and swallowed.
	// Zero means DefaultMaxItemSize.
	MaxItemSize int
	// MaxLineLength is the longest request line accepted. A longer one is
	// discarded and answered "CLIENT_ERROR line too long" (a line longer
	// than the reader's buffer closes the connection instead, unless it is
	// a get or gets). Zero means DefaultMaxLineLength.
	MaxLineLength int
}

// NewParser returns a Parser reading from r, whose buffer should be at least
// MinBufferSize bytes: a non-get line longer than the buffer closes the
// connection.
func NewParser(r *bufio.Reader) *Parser { return &Parser{r: r} }

// Parse reads the next request into req, reusing req's buffers. A request
// that memcached answers with an error is returned as Command CmdError with
// the error line in req.Reply, and a nil error: the connection goes on. A
// non-nil error means the connection is done: io.EOF, a read error,
// ErrLineTooLong or ErrHTTP. So is it after a CmdError with Close set: a
// request in memcached's binary protocol, whose Reply is the binary
// protocol's "unknown command" response (see refuseBinary).
func (p *Parser) Parse(req *Request) error {
	req.reset()
	b, err := p.r.Peek(1)
	if err != nil {
		return err // as is: Peek hands its error over once, and a second read would wait anew
	}
	if b[0] == binaryRequestMagic {
		return p.refuseBinary(req)
	}
	if err := p.readLine(req); err != nil {
		return err
	}
	if req.Command == CmdError && req.Reply != nil {
		return nil // the line was too long and has been discarded
	}
	if i := bytes.IndexByte(req.Line, 0); i >= 0 {
		req.Line = req.Line[:i]
	}
	if err := req.parseLine(); err != nil {
		return err
	}
	if req.Command.IsStorage() {
		return p.readData(req)
	}
	return nil
}

// readLine copies the next line into req.Line without its terminator.
func (p *Parser) readLine(req *Request) error {
	line, err := p.r.ReadSlice('\n')
	if err == bufio.ErrBufferFull {
		if !isLongGet(line) {
			return ErrLineTooLong
		}
		return p.readLongLine(req, line)
	}
	if err != nil {
		return err
	}
	req.Line = append(req.Line, line[:len(line)-1]...)
	req.trimCR()
	if len(req.Line) > p.maxLineLength() {
		req.Line = req.Line[:0]
		req.fail(replyLineTooLong)
	}
	return nil
}

func (p *Parser) maxLineLength() int {
	if p.MaxLineLength == 0 {
		return DefaultMaxLineLength
	}
	return p.MaxLineLength
}

// trimCR drops a "\r" before the newline, as memcached does when the line has
// more than one byte before the newline.
func (r *Request) trimCR() {
	if n := len(r.Line); n > 1 && r.Line[n-1] == '\r' {
		r.Line = r.Line[:n-1]
	}
}

// isLongGet applies memcached's rule for lines longer than its buffer: only
// a get or gets, after at most 100 leading spaces, may go on.
func isLongGet(b []byte) bool {
	i := 0
	for i < len(b) && b[i] == ' ' {
		i++
	}
	if i > 100 {
		return false
	}
	b = b[i:]
	return bytes.HasPrefix(b, []byte("get ")) || bytes.HasPrefix(b, []byte("gets "))
}

// readLongLine gathers a get line longer than the reader's buffer, up to
// MaxLineLength; past that it discards the rest of the line.
func (p *Parser) readLongLine(req *Request, first []byte) error {
	max := p.maxLineLength()
	req.Line = append(req.Line, first...)
	for {
		chunk, err := p.r.ReadSlice('\n')
		if err != nil && err != bufio.ErrBufferFull {
			return err
		}
		// Room for max bytes and a "\r\n" terminator.
		if len(req.Line)+len(chunk) > max+2 {
			req.Line = req.Line[:0]
			req.fail(replyLineTooLong)
			return p.discardLine(err)
		}
		req.Line = append(req.Line, chunk...)
		if err == nil {
			req.Line = req.Line[:len(req.Line)-1]
			req.trimCR()
			if len(req.Line) > max {
				req.Line = req.Line[:0]
				req.fail(replyLineTooLong)
			}
			return nil
		}
	}
}

// discardLine skips input up to and including the next newline; err is the
// state of the last ReadSlice (nil when the newline has been read).
func (p *Parser) discardLine(err error) error {
	for err == bufio.ErrBufferFull {
		_, err = p.r.ReadSlice('\n')
	}
	return err
}

// readData reads a storage command's data block, or swallows it when it is
// larger than MaxItemSize.
func (p *Parser) readData(req *Request) error {
	max := p.MaxItemSize
	if max == 0 {
		max = DefaultMaxItemSize
	}
	n := req.Bytes + 2
	if req.Bytes > max {
		req.Unlink = req.Command == CmdSet
		req.fail(replyTooLarge)
		_, err := p.r.Discard(n)
		return err
	}
	if cap(req.Data) < n {
		req.Data = make([]byte, n)
	}
	req.Data = req.Data[:n]
	if _, err := io.ReadFull(p.r, req.Data); err != nil {
		return err
	}
	if req.Data[n-2] != '\r' || req.Data[n-1] != '\n' {
		req.fail(replyBadDataChunk)
	}
	return nil
}
