package main

import (
	"bytes"
	"strconv"
	"sync"
)

const (
	readSize    = 16 << 10 // bytes asked of each read
	maxBuffered = 2 << 20  // a connection buffering more without a whole request is closed
	maxKey      = 250
)

// store is the map the requests read and write. It is safe for concurrent use.
type store struct {
	mu sync.RWMutex // protects m
	m  map[string][]byte
}

func newStore() *store { return &store{m: make(map[string][]byte)} }

// handle answers the complete requests at the start of in, appending their
// replies to out. It returns how many bytes of in they took, and out.
func (s *store) handle(in, out []byte) (int, []byte) {
	used := 0
	for {
		nl := bytes.IndexByte(in[used:], '\n')
		if nl < 0 {
			return used, out
		}
		line := bytes.TrimSuffix(in[used:used+nl], []byte{'\r'})
		next := used + nl + 1
		cmd, args, _ := bytes.Cut(line, []byte{' '})
		switch string(cmd) {
		case "get":
			out = s.get(args, out)
		case "set":
			n, ok := s.set(args, in[next:], &out)
			if !ok {
				return used, out // the data has not all arrived
			}
			next += n
		case "version":
			out = append(out, "VERSION floor\r\n"...)
		default:
			out = append(out, "ERROR\r\n"...)
		}
		used = next
	}
}

// get appends the values of the keys in args and END.
func (s *store) get(args, out []byte) []byte {
	for _, k := range bytes.Fields(args) {
		s.mu.RLock()
		v, ok := s.m[string(k)]
		s.mu.RUnlock()
		if !ok {
			continue
		}
		out = append(out, "VALUE "...)
		out = append(out, k...)
		out = append(out, " 0 "...)
		out = strconv.AppendInt(out, int64(len(v)), 10)
		out = append(out, "\r\n"...)
		out = append(out, v...)
		out = append(out, "\r\n"...)
	}
	return append(out, "END\r\n"...)
}

// set stores the value that follows a "set key flags exptime bytes
// [noreply]" line. It returns how many bytes of rest the data block took,
// and false if rest does not hold all of it yet. Flags and exptime are
// ignored: get answers flags 0.
func (s *store) set(args, rest []byte, out *[]byte) (int, bool) {
	f := bytes.Fields(args)
	if len(f) < 4 || len(f) > 5 || len(f[0]) > maxKey {
		*out = append(*out, "CLIENT_ERROR bad command line format\r\n"...)
		return 0, true
	}
	n, err := strconv.Atoi(string(f[3]))
	if err != nil || n < 0 || n > maxBuffered-readSize {
		*out = append(*out, "CLIENT_ERROR bad command line format\r\n"...)
		return 0, true
	}
	if len(rest) < n+2 {
		return 0, false
	}
	if rest[n] != '\r' || rest[n+1] != '\n' {
		*out = append(*out, "CLIENT_ERROR bad data chunk\r\n"...)
		return n + 2, true
	}
	v := bytes.Clone(rest[:n])
	s.mu.Lock()
	s.m[string(f[0])] = v
	s.mu.Unlock()
	if len(f) == 4 || string(f[4]) != "noreply" {
		*out = append(*out, "STORED\r\n"...)
	}
	return n + 2, true
}
