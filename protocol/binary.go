package protocol

import "encoding/binary"

// memcached's binary protocol, which objcache does not speak. A request in
// it starts with a 24-byte header whose first byte is the request magic;
// the Parser answers it with the protocol's own error response, so that a
// client configured for the binary protocol reports an error at once
// instead of waiting for an answer.
const (
	binaryRequestMagic  = 0x80
	binaryResponseMagic = 0x81
	binaryHeaderLen     = 24
	binaryUnknownCmd    = 0x0081 // the status "unknown command"
)

// binaryRefusalBody is the message of the response to a binary request.
const binaryRefusalBody = "objcache speaks the memcached text protocol only"

// appendBinaryRefusal appends the response to the binary request whose
// header is hdr: status "unknown command" for its opcode and opaque, with
// binaryRefusalBody as its value.
func appendBinaryRefusal(dst, hdr []byte) []byte {
	var h [binaryHeaderLen]byte
	h[0] = binaryResponseMagic
	h[1] = hdr[1] // opcode
	binary.BigEndian.PutUint16(h[6:8], binaryUnknownCmd)
	binary.BigEndian.PutUint32(h[8:12], uint32(len(binaryRefusalBody)))
	copy(h[12:16], hdr[12:16]) // opaque
	dst = append(dst, h[:]...)
	return append(dst, binaryRefusalBody...)
}

// refuseBinary reads the header of the binary request that starts at the
// reader and makes req its refusal: CmdError, with the binary response in
// Reply and Close set, since the request's body is not read and the bytes
// after the header are not a request.
func (p *Parser) refuseBinary(req *Request) error {
	hdr, err := p.r.Peek(binaryHeaderLen)
	if err != nil {
		return err
	}
	req.Reply = appendBinaryRefusal(nil, hdr)
	req.Close = true
	_, err = p.r.Discard(binaryHeaderLen)
	return err
}
