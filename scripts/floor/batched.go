package main

import (
	"bufio"
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"os"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// batchedLoad drives a memcached at addr the way a proxy's pipelined backend
// connections do: each of conns connections writes batch requests at once
// (90% get / 10% set of 64-byte keys and 200-byte values, over 10,000 keys),
// then reads their replies. After a second of warm-up it measures for dur
// and reports the throughput and the CPU that process pid (the memcached)
// spent per request: what a node costs per proxied request when the proxy
// batches that many requests per write.
func batchedLoad(addr string, pid, batch, conns int, dur time.Duration) error {
	if batch < 1 || conns < 1 || pid <= 0 {
		return fmt.Errorf("batched load: want -batch, -conns and -pid above 0")
	}
	var done atomic.Int64
	var failed atomic.Pointer[error]
	stop := make(chan struct{})
	var wg sync.WaitGroup
	for i := range conns {
		nc, err := net.Dial("tcp", addr)
		if err != nil {
			close(stop)
			wg.Wait()
			return err
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer nc.Close()
			if err := batches(nc, batch, uint64(i), stop, &done); err != nil {
				failed.CompareAndSwap(nil, &err)
			}
		}()
	}
	time.Sleep(time.Second)
	n0 := done.Load()
	t0, err0 := cpuTicks(pid)
	time.Sleep(dur)
	n1 := done.Load()
	t1, err1 := cpuTicks(pid)
	close(stop)
	wg.Wait()
	if err := errors.Join(err0, err1); err != nil {
		return err
	}
	if p := failed.Load(); p != nil {
		return *p
	}
	n := float64(n1 - n0)
	if n == 0 {
		return errors.New("batched load: no request was answered")
	}
	// Clock ticks are 1/100 s on Linux (getconf CLK_TCK).
	fmt.Printf("batch=%d conns=%d ops_s=%.0f server_cpu_us_per_op=%.2f\n",
		batch, conns, n/dur.Seconds(), float64(t1-t0)*1e4/n)
	return nil
}

// batches writes batch requests, reads their replies, and counts them in
// done, until stop closes.
func batches(nc net.Conn, batch int, seed uint64, stop <-chan struct{}, done *atomic.Int64) error {
	r := bufio.NewReaderSize(nc, 1<<20)
	rng := rand.New(rand.NewPCG(seed, 1))
	value := strings.Repeat("v", 200)
	var b []byte
	for {
		select {
		case <-stop:
			return nil
		default:
		}
		b = b[:0]
		for range batch {
			key := fmt.Sprintf("%064d", rng.IntN(10000))
			if rng.IntN(10) == 0 {
				b = append(b, "set "+key+" 0 0 200\r\n"+value+"\r\n"...)
			} else {
				b = append(b, "get "+key+"\r\n"...)
			}
		}
		if _, err := nc.Write(b); err != nil {
			return err
		}
		for answered := 0; answered < batch; {
			l, err := r.ReadSlice('\n')
			if err != nil {
				return err
			}
			switch {
			case string(l) == "END\r\n" || string(l) == "STORED\r\n":
				answered++
			case strings.HasPrefix(string(l), "VALUE "):
				f := strings.Fields(string(l))
				n, err := strconv.Atoi(f[len(f)-1])
				if err != nil {
					return fmt.Errorf("batched load: reply %q: %w", l, err)
				}
				if _, err := r.Discard(n + 2); err != nil {
					return err
				}
			default:
				return fmt.Errorf("batched load: unexpected reply %q", l)
			}
		}
		done.Add(int64(batch))
	}
}

// cpuTicks is utime+stime of process pid, in clock ticks.
func cpuTicks(pid int) (int64, error) {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return 0, err
	}
	s := string(b)
	f := strings.Fields(s[strings.LastIndexByte(s, ')')+2:])
	if len(f) < 13 {
		return 0, fmt.Errorf("/proc/%d/stat: %d fields after the name", pid, len(f))
	}
	u, err1 := strconv.ParseInt(f[11], 10, 64)
	k, err2 := strconv.ParseInt(f[12], 10, 64)
	return u + k, errors.Join(err1, err2)
}
