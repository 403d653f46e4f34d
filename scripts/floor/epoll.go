package main

import (
	"errors"
	"fmt"
	"log"
	"net"
	"runtime"
	"sync"
	"syscall"
)

// A loop is one edge-triggered epoll loop on its own OS thread. It is safe
// for concurrent use: the accepting goroutine adds connections while the
// loop runs.
type loop struct {
	ep    int
	st    *store
	mu    sync.Mutex // protects conns
	conns map[int32]*rawConn
}

// rawConn is a non-blocking client socket and what it has buffered.
type rawConn struct {
	fd      int
	in      []byte
	out     []byte
	pending []byte // the part of out not yet written
}

// serveEpoll accepts connections and spreads them over n loops. It returns
// when the listener fails; the loops live as long as the process.
func serveEpoll(ln *net.TCPListener, st *store, n int) error {
	loops := make([]*loop, n)
	for i := range loops {
		ep, err := syscall.EpollCreate1(syscall.EPOLL_CLOEXEC)
		if err != nil {
			return fmt.Errorf("epoll_create1: %w", err)
		}
		loops[i] = &loop{ep: ep, st: st, conns: make(map[int32]*rawConn)}
		go loops[i].run()
	}
	for i := 0; ; i++ {
		tc, err := ln.AcceptTCP()
		if err != nil {
			return err
		}
		if err := loops[i%n].add(tc); err != nil {
			log.Printf("floor: dropping a connection: %v", err) // the others go on
		}
	}
}

// add takes tc's descriptor over: a duplicate, non-blocking, in the loop's
// epoll set for input, output and hang-up, edge-triggered.
func (l *loop) add(tc *net.TCPConn) error {
	_ = tc.SetNoDelay(true)
	rc, err := tc.SyscallConn()
	if err != nil {
		tc.Close()
		return err
	}
	fd := -1
	cerr := rc.Control(func(s uintptr) { fd, err = syscall.Dup(int(s)) })
	tc.Close()
	if cerr != nil || err != nil {
		return errors.Join(cerr, err)
	}
	if err := syscall.SetNonblock(fd, true); err != nil {
		syscall.Close(fd)
		return err
	}
	c := &rawConn{fd: fd}
	l.mu.Lock()
	l.conns[int32(fd)] = c
	l.mu.Unlock()
	ev := syscall.EpollEvent{Events: syscall.EPOLLIN | syscall.EPOLLOUT | syscall.EPOLLRDHUP | -syscall.EPOLLET, Fd: int32(fd)}
	if err := syscall.EpollCtl(l.ep, syscall.EPOLL_CTL_ADD, fd, &ev); err != nil {
		l.close(c)
		return fmt.Errorf("epoll_ctl: %w", err)
	}
	return nil
}

// run waits for events and serves the connections they name, forever.
func (l *loop) run() {
	runtime.LockOSThread()
	events := make([]syscall.EpollEvent, 128)
	buf := make([]byte, readSize)
	for {
		n, err := syscall.EpollWait(l.ep, events, -1)
		if err != nil {
			if errors.Is(err, syscall.EINTR) {
				continue
			}
			panic(fmt.Sprintf("floor: epoll_wait: %v", err))
		}
		for _, ev := range events[:n] {
			l.mu.Lock()
			c := l.conns[ev.Fd]
			l.mu.Unlock()
			if c != nil && !l.serve(c, buf) {
				l.close(c)
			}
		}
	}
}

// serve writes what c has pending, then reads and answers until the socket
// has nothing more to read. Edge-triggered, so a read shorter than buf means
// the socket is drained and the next arrival brings a new event. A
// connection with replies the socket would not take is not read until they
// are written. It returns false when c should be closed.
func (l *loop) serve(c *rawConn, buf []byte) bool {
	if ok := c.flush(); !ok || len(c.pending) > 0 {
		return ok
	}
	for {
		n, err := syscall.Read(c.fd, buf)
		switch {
		case errors.Is(err, syscall.EAGAIN):
			return true
		case err != nil || n == 0:
			return false
		}
		c.in = append(c.in, buf[:n]...)
		used, reply := l.st.handle(c.in, c.out[:0])
		c.in = c.in[:copy(c.in, c.in[used:])]
		c.out, c.pending = reply, reply
		if len(c.in) > maxBuffered {
			return false
		}
		if ok := c.flush(); !ok || len(c.pending) > 0 {
			return ok
		}
		if n < len(buf) {
			return true
		}
	}
}

// flush writes c.pending until the socket takes no more. It returns false
// if the connection failed.
func (c *rawConn) flush() bool {
	for len(c.pending) > 0 {
		n, err := syscall.Write(c.fd, c.pending)
		if errors.Is(err, syscall.EAGAIN) {
			return true
		}
		if err != nil {
			return false
		}
		c.pending = c.pending[n:]
	}
	return true
}

func (l *loop) close(c *rawConn) {
	l.mu.Lock()
	delete(l.conns, int32(c.fd))
	l.mu.Unlock()
	syscall.Close(c.fd) // leaves the epoll set with its last descriptor
}
