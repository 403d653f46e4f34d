package main

import (
	"bufio"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"io"
	"math/big"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/objcache/objcache/internal/testsupport"
)

// When this variable is set, the test binary is objcache itself: the
// signal test runs it as a child process.
const childEnv = "OBJCACHE_TEST_CHILD_ARGS"

func TestMain(m *testing.M) {
	if args := os.Getenv(childEnv); args != "" {
		os.Exit(run(strings.Fields(args), os.Stdout, os.Stderr))
	}
	testsupport.Main(m)
}

// TestSIGTERMDrainsAndExitsZero: the process stops accepting, lets the
// request in flight finish and exits 0.
func TestSIGTERMDrainsAndExitsZero(t *testing.T) {
	m := testsupport.StartMemcached(t)
	listen := fmt.Sprintf("127.0.0.1:%d", testsupport.FreePort(t))
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), childEnv+"=serve --listen "+listen+" --backends "+m.Addr+" --drain-timeout 5s")
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cmd.Process.Kill() })
	c := dialEventually(t, listen)
	c.Send("set k 0 0 1\r\nv\r\n")
	c.Expect("STORED\r\n")

	m.Pause() // the next request stays in flight
	c.Send("get k\r\n")
	time.Sleep(200 * time.Millisecond)
	if err := cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	time.Sleep(200 * time.Millisecond)
	if nc, err := net.DialTimeout("tcp", listen, time.Second); err == nil {
		nc.Close()
		t.Error("still accepting connections after SIGTERM")
	}
	m.Resume()
	c.Expect("VALUE k 0 1\r\nv\r\nEND\r\n")

	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	select {
	case err := <-exited:
		if err != nil {
			t.Errorf("objcache exited with %v after SIGTERM, want 0", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("objcache did not exit within 10s of SIGTERM")
	}
}

func dialEventually(t *testing.T, addr string) *testsupport.Conn {
	t.Helper()
	for deadline := time.Now().Add(10 * time.Second); ; {
		if nc, err := net.DialTimeout("tcp", addr, time.Second); err == nil {
			nc.Close()
			return testsupport.Dial(t, addr)
		}
		if time.Now().After(deadline) {
			t.Fatalf("nothing listens on %s", addr)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// TestTLSListener: with tls_cert and tls_key, memcached clients and HTTP
// both speak TLS on the one port.
func TestTLSListener(t *testing.T) {
	m := testsupport.StartMemcached(t)
	dir := t.TempDir()
	certFile, keyFile, pool := selfSigned(t, dir)
	addr := fmt.Sprintf("127.0.0.1:%d", testsupport.FreePort(t))
	c := config{Listen: addr, Backends: []string{m.Addr}, TLSCert: certFile, TLSKey: keyFile}
	if tc, err := tlsConfig(c); tc == nil || err != nil { // the key pair loads
		t.Fatalf("tlsConfig = %v, %v", tc, err)
	}

	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), childEnv+"=serve --listen "+addr+" --backends "+m.Addr+" --tls-cert "+certFile+" --tls-key "+keyFile)
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = cmd.Process.Signal(syscall.SIGTERM)
		_ = cmd.Wait()
	})
	var conn *tls.Conn
	var err error
	for deadline := time.Now().Add(10 * time.Second); ; {
		conn, err = tls.Dial("tcp", addr, &tls.Config{RootCAs: pool, ServerName: "127.0.0.1"})
		if err == nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal(err)
		}
		time.Sleep(50 * time.Millisecond)
	}
	defer conn.Close()
	_ = conn.SetDeadline(time.Now().Add(5 * time.Second))
	io.WriteString(conn, "set k 0 0 1\r\nv\r\nget k\r\n")
	br := bufio.NewReader(conn)
	var got strings.Builder
	for i := 0; i < 4; i++ {
		line, err := br.ReadString('\n')
		if err != nil {
			t.Fatal(err)
		}
		got.WriteString(line)
	}
	if got.String() != "STORED\r\nVALUE k 0 1\r\nv\r\nEND\r\n" {
		t.Errorf("over TLS: %q", got.String())
	}

	client := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}}}
	resp, err := client.Get("https://" + addr + "/healthz")
	if err != nil {
		t.Fatalf("HTTPS GET /healthz: %v", err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK || !strings.Contains(string(body), `"status":"ok"`) {
		t.Errorf("HTTPS GET /healthz = %d %q, want 200 and status ok", resp.StatusCode, body)
	}
	if resp, err := (&http.Client{Timeout: 5 * time.Second}).Get("http://" + addr + "/healthz"); err == nil {
		resp.Body.Close()
		t.Errorf("plain HTTP on the TLS port = %d, want a failed handshake", resp.StatusCode)
	}
}

// selfSigned writes a certificate for 127.0.0.1 and its key into dir.
func selfSigned(t *testing.T, dir string) (certFile, keyFile string, pool *x509.CertPool) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1),
		Subject:      pkix.Name{CommonName: "objcache test"},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(time.Hour),
		IPAddresses:  []net.IP{net.ParseIP("127.0.0.1")},
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	keyDER, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	certFile, keyFile = filepath.Join(dir, "cert.pem"), filepath.Join(dir, "key.pem")
	if err := os.WriteFile(certFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(keyFile, pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: keyDER}), 0o600); err != nil {
		t.Fatal(err)
	}
	cert, _ := x509.ParseCertificate(der)
	pool = x509.NewCertPool()
	pool.AddCert(cert)
	return certFile, keyFile, pool
}
