// Package protocol reads and writes memcached's text protocol.
//
// It parses client requests from a *bufio.Reader exactly as memcached 1.6
// does (the same tokenizing, the same number parsing, the same error lines),
// reads backend replies, and appends replies. It decides nothing about where a
// request goes or when bytes are flushed: that is the proxy's business.
//
// A Parser reuses the Request it is given, so a connection that parses into
// one Request over and over allocates nothing on the parse path.
package protocol
