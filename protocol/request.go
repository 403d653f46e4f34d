package protocol

import (
	"bytes"
	"strconv"
)

// Command is a memcached text protocol command.
type Command uint8

// The commands a Parser recognises. CmdError is not a command: it marks a
// request line that memcached answers with an error (Request.Reply).
const (
	CmdError Command = iota
	CmdGet
	CmdGets
	CmdGat
	CmdGats
	CmdSet
	CmdAdd
	CmdReplace
	CmdAppend
	CmdPrepend
	CmdCas
	CmdDelete
	CmdIncr
	CmdDecr
	CmdTouch
	CmdFlushAll
	CmdVersion
	CmdVerbosity
	CmdStats
	CmdQuit
	numCommands
)

// NumCommands is one more than the largest Command, for arrays indexed by
// Command.
const NumCommands = int(numCommands)

var commandNames = [numCommands]string{
	CmdError: "error", CmdGet: "get", CmdGets: "gets", CmdGat: "gat", CmdGats: "gats",
	CmdSet: "set", CmdAdd: "add", CmdReplace: "replace", CmdAppend: "append",
	CmdPrepend: "prepend", CmdCas: "cas", CmdDelete: "delete", CmdIncr: "incr",
	CmdDecr: "decr", CmdTouch: "touch", CmdFlushAll: "flush_all", CmdVersion: "version",
	CmdVerbosity: "verbosity", CmdStats: "stats", CmdQuit: "quit",
}

// String returns the command's name as written on the wire.
func (c Command) String() string {
	if c < numCommands {
		return commandNames[c]
	}
	return "command(" + strconv.Itoa(int(c)) + ")"
}

// Commands lists every command, CmdError excluded, for metrics and tests.
func Commands() []Command {
	cs := make([]Command, 0, numCommands-1)
	for c := CmdGet; c < numCommands; c++ {
		cs = append(cs, c)
	}
	return cs
}

// IsRetrieval reports whether c answers with VALUE blocks and END.
func (c Command) IsRetrieval() bool { return c >= CmdGet && c <= CmdGats }

// IsStorage reports whether c is followed by a data block.
func (c Command) IsStorage() bool { return c >= CmdSet && c <= CmdCas }

// Request is one parsed client request. The Parser owns nothing in it: all
// slices point into the Request's own buffers, which the next Parse reuses.
// A Request is not safe for concurrent use.
type Request struct {
	Command Command
	// Line is the request line without its terminator, cut at the first NUL
	// byte as memcached's C string handling cuts it.
	Line []byte
	// Keys are the request's keys, slices of Line. For gat/gats they follow
	// the exptime.
	Keys [][]byte
	// Args are the tokens after stats (slices of Line, noreply
	// excluded). flush_all's delay is in Exptime, verbosity's level in
	// Level.
	Args    [][]byte
	Flags   uint32
	Exptime int32
	Bytes   int    // the declared length of a storage command's data
	Cas     uint64 // the compare-and-swap value of cas
	Delta   uint64 // the amount of incr/decr
	Level   uint32 // the level of verbosity
	NoReply bool
	// Data is the data block of a storage command: its declared bytes
	// followed by "\r\n".
	Data []byte
	// Reply is the error line memcached sends for a CmdError request,
	// "\r\n" included (a binary response when Close is set). It is nil
	// when memcached sends nothing (noreply).
	Reply []byte
	// Unlink marks a CmdError request after which memcached removes the
	// value of Keys[0]: a set too large for the cache, so that a client does
	// not go on reading the value it meant to replace.
	Unlink bool
	// Close marks a CmdError request after whose Reply the connection
	// ends: a request in memcached's binary protocol, whose Reply is a
	// binary response.
	Close bool

	tokens [][]byte // scratch for tokenizing
}

// AppendForward appends the request line of a valid request as the proxy
// sends it to a backend, without its "\r\n". The line is rebuilt from what
// was parsed, in memcached's own terms: single spaces, numbers as memcached
// read them (an exptime of 4294967296 is 0 to memcached, and is sent as 0),
// "bget" as "get", and no noreply token, so that every request sent has
// exactly one reply and a backend connection never loses its place. Only a
// retrieval's line can be longer than MaxForwardLine; memcached closes a
// connection on which any other line passes 2048 bytes unterminated.
func (r *Request) AppendForward(dst []byte) []byte {
	dst = r.AppendHead(dst)
	if r.Command.IsRetrieval() {
		for _, k := range r.Keys {
			dst = append(dst, ' ')
			dst = append(dst, k...)
		}
		return dst
	}
	if len(r.Keys) == 1 {
		dst = append(dst, ' ')
		dst = append(dst, r.Keys[0]...)
	}
	switch {
	case r.Command.IsStorage():
		dst = appendNumber(dst, uint64(r.Flags))
		dst = appendSigned(dst, int64(r.Exptime))
		dst = appendNumber(dst, uint64(r.Bytes))
		if r.Command == CmdCas {
			dst = appendNumber(dst, r.Cas)
		}
	case r.Command == CmdIncr || r.Command == CmdDecr:
		dst = appendNumber(dst, r.Delta)
	case r.Command == CmdTouch:
		dst = appendSigned(dst, int64(r.Exptime))
	case r.Command == CmdFlushAll && r.Exptime != 0:
		dst = appendSigned(dst, int64(r.Exptime))
	case r.Command == CmdVerbosity:
		dst = appendNumber(dst, uint64(r.Level))
	case r.Command == CmdStats: // not forwarded, but its line is the same
		for _, a := range r.Args {
			dst = append(dst, ' ')
			dst = append(dst, a...)
		}
	}
	return dst
}

// MaxForwardLine bounds the length of AppendForward's line for every
// command but the retrievals: the longest is a cas with a 250-byte key.
const MaxForwardLine = 512

// AppendHead appends the part of the forwarded line before the keys: the
// command and, for gat and gats, the exptime.
func (r *Request) AppendHead(dst []byte) []byte {
	dst = append(dst, r.Command.String()...)
	if r.Command == CmdGat || r.Command == CmdGats {
		dst = appendSigned(dst, int64(r.Exptime))
	}
	return dst
}

func appendNumber(dst []byte, v uint64) []byte {
	return strconv.AppendUint(append(dst, ' '), v, 10)
}

func appendSigned(dst []byte, v int64) []byte {
	return strconv.AppendInt(append(dst, ' '), v, 10)
}

// Value returns the value bytes of a storage command, without "\r\n".
func (r *Request) Value() []byte { return r.Data[:len(r.Data)-2] }

// retainLimit is the largest buffer a Request keeps between requests, so that
// one large request does not pin memory for the life of a connection.
const retainLimit = 16 << 10

func (r *Request) reset() {
	if cap(r.Line) > retainLimit {
		r.Line = nil
	}
	if cap(r.Data) > retainLimit {
		r.Data = nil
	}
	r.Command = CmdError
	r.Line = r.Line[:0]
	r.Keys = r.Keys[:0]
	r.Args = r.Args[:0]
	r.Flags, r.Exptime, r.Bytes, r.Cas, r.Delta, r.Level = 0, 0, 0, 0, 0, 0
	r.NoReply = false
	r.Data = r.Data[:0]
	r.Reply = nil
	r.Unlink = false
	r.Close = false
	r.tokens = r.tokens[:0]
}

// The error lines memcached sends.
var (
	replyError          = []byte("ERROR\r\n")
	replyBadFormat      = []byte("CLIENT_ERROR bad command line format\r\n")
	replyBadExptime     = []byte("CLIENT_ERROR invalid exptime argument\r\n")
	replyBadDelta       = []byte("CLIENT_ERROR invalid numeric delta argument\r\n")
	replyDeleteUsage    = []byte("CLIENT_ERROR bad command line format.  Usage: delete <key> [noreply]\r\n")
	replyBadDataChunk   = []byte("CLIENT_ERROR bad data chunk\r\n")
	replyTooLarge       = []byte("SERVER_ERROR object too large for cache\r\n")
	replyLineTooLong    = []byte("CLIENT_ERROR line too long\r\n")
	noreplyToken        = []byte("noreply")
	maxTokens           = 24 // memcached's MAX_TOKENS, terminal token included
	httpVersionPrefix   = []byte("HTTP/")
	deleteHoldZeroToken = []byte("0")
)

// MaxKeyLength is memcached's KEY_MAX_LENGTH.
const MaxKeyLength = 250

// tokenize splits line on spaces as memcached's tokenize_command does (runs of
// spaces separate, nothing else does) and returns memcached's token count:
// at most maxTokens-1 real tokens plus the terminal one.
func (r *Request) tokenize(line []byte) int {
	toks := r.tokens[:0]
	for len(line) > 0 {
		i := bytes.IndexByte(line, ' ')
		if i < 0 {
			toks = append(toks, line)
			break
		}
		if i > 0 {
			toks = append(toks, line[:i])
		}
		line = line[i+1:]
	}
	r.tokens = toks
	n := len(toks)
	if n > maxTokens-1 {
		n = maxTokens - 1
	}
	return n + 1
}

// fail marks the request as one memcached answers with reply (or with nothing
// when noreply was given).
func (r *Request) fail(reply []byte) {
	r.Command = CmdError
	if r.NoReply {
		reply = nil
	}
	r.Reply = reply
}

// setNoReply applies memcached's set_noreply_maybe: noreply is the last of
// the counted tokens.
func (r *Request) setNoReply(ntokens int) {
	r.NoReply = bytes.Equal(r.tokens[ntokens-2], noreplyToken)
}
