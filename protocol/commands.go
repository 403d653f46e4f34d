package protocol

import "bytes"

// parseLine tokenizes req.Line and fills req as memcached's
// process_command_ascii would act on it. Only ErrHTTP is returned; every
// other problem becomes a CmdError request.
func (r *Request) parseLine() error {
	n := r.tokenize(r.Line)
	if n < 2 || len(r.tokens[0]) < 2 {
		r.fail(replyError)
		return nil
	}
	switch string(r.tokens[0]) {
	case "get", "bget":
		r.parseRetrieval(CmdGet, n)
	case "gets":
		r.parseRetrieval(CmdGets, n)
	case "gat":
		r.parseRetrieval(CmdGat, n)
	case "gats":
		r.parseRetrieval(CmdGats, n)
	case "set":
		r.parseStorage(CmdSet, n)
	case "add":
		r.parseStorage(CmdAdd, n)
	case "replace":
		r.parseStorage(CmdReplace, n)
	case "append":
		r.parseStorage(CmdAppend, n)
	case "prepend":
		r.parseStorage(CmdPrepend, n)
	case "cas":
		r.parseStorage(CmdCas, n)
	case "delete":
		r.parseDelete(n)
	case "incr":
		r.parseArithmetic(CmdIncr, n)
	case "decr":
		r.parseArithmetic(CmdDecr, n)
	case "touch":
		r.parseTouch(n)
	case "flush_all":
		r.parseFlushAll(n)
	case "verbosity":
		r.parseVerbosity(n)
	case "version":
		r.Command = CmdVersion
	case "quit":
		r.Command = CmdQuit
	case "stats":
		r.Command = CmdStats
		r.Args = append(r.Args, r.tokens[1:n-1]...)
	default:
		if closesOnHTTP(r.tokens[0]) && bytes.HasPrefix(r.tokens[n-2], httpVersionPrefix) {
			return ErrHTTP
		}
		r.fail(replyError)
	}
	return nil
}

// closesOnHTTP reports whether memcached 1.6 reaches its HTTP check for the
// unknown command cmd. It dispatches on the first byte before comparing
// names: an unknown command starting with g, s, a, c, i, d or t, a two-byte
// one starting with m (the meta commands), and the commands it knows that
// the proxy does not are answered ERROR, whatever their last token.
func closesOnHTTP(cmd []byte) bool {
	switch cmd[0] {
	case 'g', 's', 'a', 'c', 'i', 'd', 't':
		return false
	case 'm':
		return len(cmd) != 2
	}
	switch string(cmd) {
	case "lru_crawler", "watch", "lru", "extstore":
		return false
	}
	return true
}

// keysValid checks memcached's key length limit on keys.
func keysValid(keys [][]byte) bool {
	for _, k := range keys {
		if len(k) > MaxKeyLength {
			return false
		}
	}
	return true
}

// parseRetrieval handles get, gets, gat and gats. Every token after the
// command (after the exptime for gat/gats) is a key, beyond memcached's
// 24-token window too, as memcached goes on tokenizing a long get.
func (r *Request) parseRetrieval(cmd Command, n int) {
	if n < 3 {
		r.fail(replyError)
		return
	}
	keys := r.tokens[1:]
	if cmd == CmdGat || cmd == CmdGats {
		exp, ok := ParseInt32(keys[0])
		if !ok {
			r.fail(replyBadExptime)
			return
		}
		r.Exptime = exp
		keys = keys[1:]
	}
	if !keysValid(keys) {
		r.fail(replyBadFormat)
		return
	}
	r.Command = cmd
	r.Keys = append(r.Keys, keys...)
}

// parseStorage handles set, add, replace, append, prepend and cas lines.
func (r *Request) parseStorage(cmd Command, n int) {
	want := 6
	if cmd == CmdCas {
		want = 7
	}
	if n != want && n != want+1 {
		r.fail(replyError)
		return
	}
	r.setNoReply(n)
	t := r.tokens
	if len(t[1]) > MaxKeyLength {
		r.fail(replyBadFormat)
		return
	}
	flags, ok1 := ParseUint32(t[2])
	exp, ok2 := ParseInt32(t[3])
	vlen, ok3 := ParseInt32(t[4])
	if !(ok1 && ok2 && ok3) {
		r.fail(replyBadFormat)
		return
	}
	if cmd == CmdCas {
		cas, ok := ParseUint64(t[5])
		if !ok {
			r.fail(replyBadFormat)
			return
		}
		r.Cas = cas
	}
	if vlen < 0 || vlen > 1<<31-1-2 {
		r.fail(replyBadFormat)
		return
	}
	r.Command = cmd
	r.Keys = append(r.Keys, t[1])
	r.Flags, r.Exptime, r.Bytes = flags, exp, int(vlen)
}

// parseDelete handles "delete <key> [0] [noreply]".
func (r *Request) parseDelete(n int) {
	if n < 3 || n > 5 {
		r.fail(replyError)
		return
	}
	if n > 3 {
		holdZero := bytes.Equal(r.tokens[2], deleteHoldZeroToken)
		r.setNoReply(n)
		valid := (n == 4 && (holdZero || r.NoReply)) || (n == 5 && holdZero && r.NoReply)
		if !valid {
			r.fail(replyDeleteUsage)
			return
		}
	}
	if len(r.tokens[1]) > MaxKeyLength {
		r.fail(replyBadFormat)
		return
	}
	r.Command = CmdDelete
	r.Keys = append(r.Keys, r.tokens[1])
}

// keyArg checks "cmd <key> <arg> [noreply]" (incr, decr, touch) as
// memcached does, in its order, and returns the argument token; ok is false
// when the request has failed.
func (r *Request) keyArg(n int) (arg []byte, ok bool) {
	if n != 4 && n != 5 {
		r.fail(replyError)
		return nil, false
	}
	r.setNoReply(n)
	if len(r.tokens[1]) > MaxKeyLength {
		r.fail(replyBadFormat)
		return nil, false
	}
	return r.tokens[2], true
}

// parseArithmetic handles "incr|decr <key> <delta> [noreply]".
func (r *Request) parseArithmetic(cmd Command, n int) {
	arg, ok := r.keyArg(n)
	if !ok {
		return
	}
	if r.Delta, ok = ParseUint64(arg); !ok {
		r.fail(replyBadDelta)
		return
	}
	r.Command = cmd
	r.Keys = append(r.Keys, r.tokens[1])
}

// parseTouch handles "touch <key> <exptime> [noreply]".
func (r *Request) parseTouch(n int) {
	arg, ok := r.keyArg(n)
	if !ok {
		return
	}
	if r.Exptime, ok = ParseInt32(arg); !ok {
		r.fail(replyBadExptime)
		return
	}
	r.Command = CmdTouch
	r.Keys = append(r.Keys, r.tokens[1])
}

// parseFlushAll handles "flush_all [delay] [noreply]".
func (r *Request) parseFlushAll(n int) {
	if n < 2 || n > 4 {
		r.fail(replyError)
		return
	}
	r.setNoReply(n)
	plain := 2
	if r.NoReply {
		plain = 3
	}
	if n != plain {
		exp, ok := ParseInt32(r.tokens[1])
		if !ok {
			r.fail(replyBadExptime)
			return
		}
		r.Exptime = exp
	}
	r.Command = CmdFlushAll
}

// parseVerbosity handles "verbosity <level> [noreply]".
func (r *Request) parseVerbosity(n int) {
	if n != 3 && n != 4 {
		r.fail(replyError)
		return
	}
	r.setNoReply(n)
	level, ok := ParseUint32(r.tokens[1])
	if !ok {
		r.fail(replyBadFormat)
		return
	}
	r.Command = CmdVerbosity
	r.Level = level
}
