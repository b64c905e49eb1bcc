// spdy-peer: the SPDY side of Kubernetes' streaming, played by moby/spdystream (the
// library kubectl, the API server and the kubelet use), for crisd's interop test
// (tests/unit/spdy_interop_test.cpp). Built in GOPATH mode against Debian's
// golang-github-docker-spdystream-dev.
//
//	spdy-peer server          serves on 127.0.0.1:<port> (printed first), like the kubelet:
//	                          /exec?out=N  streams error/stdin/stdout/stderr; stdout gets
//	                                       "out:" + stdin, then N bytes of 'o'; stderr "err\n";
//	                                       the error stream a v4 Status with exit code 7
//	                          /portforward echoes the data stream with "echo:"
//	spdy-peer exec URL N      like client-go (v4): streams error, stdin, stdout, stderr; writes
//	                          N bytes of 'i' on stdin and closes it; prints stdout's length,
//	                          its first 16 bytes, stderr and the error stream as JSON
//	spdy-peer forward URL PORT REQUEST
//	                          like client-go's port forwarder: error stream (closed at once),
//	                          data stream, REQUEST written then closed; prints the data and
//	                          the error stream as JSON
package main

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
	"io/ioutil"
	"net"
	"net/http"
	"os"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/moby/spdystream"
)

func main() {
	switch os.Args[1] {
	case "server":
		server()
	case "exec":
		n, _ := strconv.Atoi(os.Args[3])
		execClient(os.Args[2], n)
	case "forward":
		forwardClient(os.Args[2], os.Args[3], os.Args[4])
	default:
		fmt.Fprintln(os.Stderr, "usage: spdy-peer server | exec URL N")
		os.Exit(2)
	}
}

func upgrade(w http.ResponseWriter, r *http.Request, protocols []string) (*spdystream.Connection, chan *spdystream.Stream, string) {
	if !strings.Contains(strings.ToLower(r.Header.Get("Connection")), "upgrade") ||
		!strings.Contains(strings.ToLower(r.Header.Get("Upgrade")), "spdy/3.1") {
		http.Error(w, "missing upgrade headers", http.StatusBadRequest)
		return nil, nil, ""
	}
	chosen := ""
	for _, offered := range r.Header["X-Stream-Protocol-Version"] {
		for _, p := range protocols {
			if chosen == "" && strings.TrimSpace(offered) == p {
				chosen = p
			}
		}
	}
	if chosen == "" {
		http.Error(w, "unable to negotiate protocol", http.StatusForbidden)
		return nil, nil, ""
	}
	w.Header().Add("X-Stream-Protocol-Version", chosen)
	w.Header().Add("Connection", "Upgrade")
	w.Header().Add("Upgrade", "SPDY/3.1")
	w.WriteHeader(http.StatusSwitchingProtocols)
	conn, bufrw, err := w.(http.Hijacker).Hijack()
	if err != nil {
		panic(err)
	}
	// As apimachinery's connWrapper: bytes the HTTP server already buffered are read first.
	sc, err := spdystream.NewConnection(&bufConn{conn, bufrw.Reader}, true)
	if err != nil {
		panic(err)
	}
	streams := make(chan *spdystream.Stream, 16)
	go sc.Serve(func(s *spdystream.Stream) {
		s.SendReply(http.Header{}, false)
		streams <- s
	})
	return sc, streams, chosen
}

func server() {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		panic(err)
	}
	fmt.Println(l.Addr().(*net.TCPAddr).Port)
	os.Stdout.Sync()
	http.HandleFunc("/exec", func(w http.ResponseWriter, r *http.Request) {
		conn, streams, _ := upgrade(w, r, []string{"v4.channel.k8s.io", "v3.channel.k8s.io", "v2.channel.k8s.io", "channel.k8s.io"})
		if conn == nil {
			return
		}
		byType := map[string]*spdystream.Stream{}
		for len(byType) < 4 {
			select {
			case s := <-streams:
				byType[s.Headers().Get("streamtype")] = s
			case <-time.After(10 * time.Second):
				conn.Close()
				return
			}
		}
		in, _ := ioutil.ReadAll(byType["stdin"])
		extra, _ := strconv.Atoi(r.URL.Query().Get("out"))
		byType["stdout"].Write([]byte("out:" + string(in)))
		if extra > 0 {
			byType["stdout"].Write([]byte(strings.Repeat("o", extra)))
		}
		byType["stderr"].Write([]byte("err\n"))
		byType["error"].Write([]byte(`{"metadata":{},"status":"Failure","message":"command terminated with non-zero exit code: exit status 7","reason":"NonZeroExitCode","details":{"causes":[{"reason":"ExitCode","message":"7"}]}}`))
		for _, s := range byType {
			s.Close()
		}
		time.Sleep(100 * time.Millisecond)
		conn.Close()
	})
	http.HandleFunc("/portforward", func(w http.ResponseWriter, r *http.Request) {
		conn, streams, _ := upgrade(w, r, []string{"portforward.k8s.io"})
		if conn == nil {
			return
		}
		var errStream, data *spdystream.Stream
		for errStream == nil || data == nil {
			s := <-streams
			if s.Headers().Get("streamtype") == "error" {
				errStream = s
			} else {
				data = s
			}
		}
		req, _ := ioutil.ReadAll(data)
		data.Write([]byte("echo:" + data.Headers().Get("port") + ":" + string(req)))
		data.Close()
		errStream.Close()
		time.Sleep(100 * time.Millisecond)
		conn.Close()
	})
	http.Serve(l, nil)
}

// dial upgrades like client-go's SpdyRoundTripper; nil when the server refused.
func dial(url string, protocols ...string) (*spdystream.Connection, string) {
	u := strings.TrimPrefix(url, "http://")
	slash := strings.Index(u, "/")
	conn, err := net.Dial("tcp", u[:slash])
	if err != nil {
		panic(err)
	}
	req := "POST " + u[slash:] + " HTTP/1.1\r\nHost: " + u[:slash] + "\r\nContent-Length: 0\r\nConnection: Upgrade\r\nUpgrade: SPDY/3.1\r\n"
	for _, p := range protocols {
		req += "X-Stream-Protocol-Version: " + p + "\r\n"
	}
	fmt.Fprint(conn, req+"\r\n")
	br := bufio.NewReader(conn)
	resp, err := http.ReadResponse(br, nil)
	if err != nil {
		panic(err)
	}
	if resp.StatusCode != 101 {
		fmt.Printf("{\"http_status\":%d}\n", resp.StatusCode)
		return nil, ""
	}
	sc, err := spdystream.NewConnection(&bufConn{conn, br}, false)
	if err != nil {
		panic(err)
	}
	go sc.Serve(spdystream.NoOpStreamHandler)
	return sc, resp.Header.Get("X-Stream-Protocol-Version")
}

func create(sc *spdystream.Connection, h http.Header) *spdystream.Stream {
	s, err := sc.CreateStream(h, nil, false)
	if err != nil {
		panic(err)
	}
	if err := s.WaitTimeout(10 * time.Second); err != nil {
		panic(err)
	}
	return s
}

func forwardClient(url, port, request string) {
	sc, protocol := dial(url, "portforward.k8s.io")
	if sc == nil {
		return
	}
	h := http.Header{}
	h.Set("streamType", "error")
	h.Set("port", port)
	h.Set("requestID", "0")
	errStream := create(sc, h)
	errStream.Close()
	h.Set("streamType", "data")
	data := create(sc, h)
	var errText []byte
	done := make(chan struct{})
	go func() { errText, _ = ioutil.ReadAll(errStream); close(done) }()
	data.Write([]byte(request))
	data.Close()
	got, _ := ioutil.ReadAll(data)
	data.Reset()
	<-done
	b, _ := json.Marshal(map[string]interface{}{"http_status": 101, "protocol": protocol, "data": string(got), "error": string(errText)})
	fmt.Println(string(b))
	sc.Close()
}

func execClient(url string, n int) {
	sc, protocol := dial(url, "v4.channel.k8s.io", "channel.k8s.io")
	if sc == nil {
		return
	}
	stream := func(t string) *spdystream.Stream { return create(sc, http.Header{"Streamtype": []string{t}}) }
	errStream := stream("error")
	stdin := stream("stdin")
	stdout := stream("stdout")
	stderr := stream("stderr")
	go func() {
		stdin.Write([]byte(strings.Repeat("i", n)))
		stdin.Close()
	}()
	var wg sync.WaitGroup
	var out, errOut, status []byte
	wg.Add(3)
	go func() { out, _ = ioutil.ReadAll(stdout); wg.Done() }()
	go func() { errOut, _ = ioutil.ReadAll(stderr); wg.Done() }()
	go func() { status, _ = ioutil.ReadAll(errStream); wg.Done() }()
	wg.Wait()
	prefix := out
	if len(prefix) > 16 {
		prefix = prefix[:16]
	}
	res := map[string]interface{}{
		"http_status":   101,
		"protocol":      protocol,
		"stdout_len":    len(out),
		"stdout_prefix": string(prefix),
		"stderr":        string(errOut),
		"status":        string(status),
	}
	b, _ := json.Marshal(res)
	fmt.Println(string(b))
	sc.Close()
}

type bufConn struct {
	net.Conn
	r io.Reader
}

func (c *bufConn) Read(p []byte) (int, error) { return c.r.Read(p) }
