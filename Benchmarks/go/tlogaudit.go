// Command tlogaudit is the reference that `make bench` runs in the same run as `keyglass audit`
// (issue 13): an auditor written the way a Go programmer would write one with golang.org/x/mod's
// sumdb/tlog and sumdb/note. It reads the same HTTP API as Keyglass's auditor, from an empty
// state:
//
//   - GET /checkpoint, a c2sp.org/tlog-checkpoint signed note (origin, size, base64 root), and,
//     given -vkey, checks its signature with note.Open against the log's verifier key (the
//     name+hash+base64 key Keyglass writes to DATA/verifier-key is Go's note format);
//   - every full entry bundle and the final partial one, c2sp.org/tlog-tiles paths
//     (/tile/entries/x001/234, /tile/entries/x001/234.p/W), each entry prefixed by its uint16
//     big-endian length;
//   - rebuilds the tree with tlog's stored hashes, kept in memory as Benchmarks/go/tlogbench.go
//     does, and checks tlog.TreeHash and the entry count against the checkpoint.
//
// Why it is a fair reference, not a strawman: N workers (default 2 × GOMAXPROCS) fetch bundles
// concurrently over keep-alive connections (MaxIdleConnsPerHost = N, no gzip negotiation), reading
// each body into a pooled buffer; each worker also splits its bundle and computes the leaf hashes
// (tlog.RecordHash), as Keyglass's fetch tasks do, so that work runs in parallel. One goroutine
// folds the leaf hashes into the tree in log order with tlog.StoredHashesForRecordHash (exactly
// tlog.StoredHashes minus the RecordHash it would compute itself) while fetching continues, with
// a bounded window of bundles ahead of it. It does less than `keyglass audit`: it counts the
// entries but parses nothing else (Keyglass's auditor also parses and checks every entry, keeps
// a compact range rather than all stored hashes, saves its state, and retries failed requests;
// this one exits on the first error). One limit is the toolchain's, not the program's: Debian 12's
// Go 1.19 crypto/sha256 has no SHA-NI path (Go 1.21 added one), so on a SHA-NI machine its
// hashing is about 2.5× slower than OpenSSL's; tlogbench.go shares that limit.
//
// Usage (run as Benchmarks/run.sh runs tlogbench.go):
//
//	GO111MODULE=off GOPATH=/usr/share/gocode go run Benchmarks/go/tlogaudit.go \
//	    -log http://127.0.0.1:PORT [-vkey DATA/verifier-key] [-workers N]
//
// On success it prints `<entries_per_second> <size> <root_base64>` to stdout and a human line to
// stderr; the rate is size / wall time from the first request (GET /checkpoint) to the root check.
// Any failure (a non-200 answer, a short bundle, a bundle with the wrong number of entries, a bad
// signature, a root or size mismatch) exits 1 with a message.
package main

import (
	"bytes"
	"encoding/base64"
	"encoding/binary"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"time"

	"golang.org/x/mod/sumdb/note"
	"golang.org/x/mod/sumdb/tlog"
)

const (
	tileWidth = 256
	// The largest valid bundle: 256 entries of 65,535 bytes and their length prefixes.
	maxBundle = tileWidth * (2 + 65535)
)

func fail(format string, args ...interface{}) {
	fmt.Fprintf(os.Stderr, "tlogaudit: "+format+"\n", args...)
	os.Exit(1)
}

// memHashes is the tree's stored hashes, in tlog's storage order, held in memory.
type memHashes []tlog.Hash

func (m memHashes) ReadHashes(indexes []int64) ([]tlog.Hash, error) {
	out := make([]tlog.Hash, len(indexes))
	for i, x := range indexes {
		if x < 0 || x >= int64(len(m)) {
			return nil, fmt.Errorf("stored hash %d not yet computed", x)
		}
		out[i] = m[x]
	}
	return out, nil
}

// tilePath is the c2sp.org/tlog-tiles path of entry bundle n: the index in three-digit groups,
// all but the last prefixed with "x", and ".p/W" for a partial bundle of W entries.
func tilePath(n int64, partial int) string {
	var groups []string
	for {
		groups = append(groups, fmt.Sprintf("%03d", n%1000))
		n /= 1000
		if n == 0 {
			break
		}
	}
	var b strings.Builder
	b.WriteString("/tile/entries")
	for i := len(groups) - 1; i >= 0; i-- {
		b.WriteByte('/')
		if i > 0 {
			b.WriteByte('x')
		}
		b.WriteString(groups[i])
	}
	if partial > 0 {
		fmt.Fprintf(&b, ".p/%d", partial)
	}
	return b.String()
}

type checkpoint struct {
	origin string
	size   int64
	root   tlog.Hash
}

// parseCheckpoint reads the note text: origin line, size line, base64 root line, and optional
// extension lines, which are ignored.
func parseCheckpoint(text string) (checkpoint, error) {
	var c checkpoint
	if !strings.HasSuffix(text, "\n") {
		return c, errors.New("checkpoint text does not end in a newline")
	}
	lines := strings.Split(strings.TrimSuffix(text, "\n"), "\n")
	if len(lines) < 3 {
		return c, errors.New("checkpoint has fewer than three lines")
	}
	c.origin = lines[0]
	if c.origin == "" {
		return c, errors.New("checkpoint origin is empty")
	}
	size, err := strconv.ParseInt(lines[1], 10, 64)
	if err != nil || size < 0 || strconv.FormatInt(size, 10) != lines[1] {
		return c, fmt.Errorf("checkpoint size %q is not a decimal number", lines[1])
	}
	c.size = size
	root, err := base64.StdEncoding.DecodeString(lines[2])
	if err != nil || len(root) != tlog.HashSize {
		return c, fmt.Errorf("checkpoint root %q is not base64 of %d bytes", lines[2], tlog.HashSize)
	}
	copy(c.root[:], root)
	return c, nil
}

// bundleResult is one fetched bundle, reduced to its entries' leaf hashes.
type bundleResult struct {
	leaves []tlog.Hash
	err    error
}

type job struct {
	tile  int64
	count int // entries expected: 256, or W for the final partial bundle
	out   chan bundleResult
}

var bufPool = sync.Pool{New: func() interface{} { b := make([]byte, 0, 64<<10); return &b }}

// get answers the body of GET base+path in a pooled buffer (the caller puts it back).
func get(client *http.Client, url string, limit int64) (*[]byte, error) {
	resp, err := client.Get(url)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	bp := bufPool.Get().(*[]byte)
	buf := bytes.NewBuffer((*bp)[:0])
	if resp.ContentLength > 0 && resp.ContentLength <= limit {
		buf.Grow(int(resp.ContentLength))
	}
	_, err = buf.ReadFrom(io.LimitReader(resp.Body, limit+1))
	body := buf.Bytes()
	*bp = body
	if err != nil {
		bufPool.Put(bp)
		return nil, fmt.Errorf("GET %s: reading the body: %v", url, err)
	}
	if resp.StatusCode != http.StatusOK {
		msg := strings.TrimSpace(string(body[:minInt(len(body), 200)]))
		bufPool.Put(bp)
		return nil, fmt.Errorf("GET %s: HTTP %d: %s", url, resp.StatusCode, msg)
	}
	if int64(len(body)) > limit {
		bufPool.Put(bp)
		return nil, fmt.Errorf("GET %s: body longer than %d bytes", url, limit)
	}
	return bp, nil
}

func minInt(a, b int) int {
	if a < b {
		return a
	}
	return b
}

// fetchBundle GETs one entry bundle, splits it (checking it holds exactly j.count entries) and
// hashes its entries. Nothing in an entry is parsed: Keyglass's auditor also parses each one.
func fetchBundle(client *http.Client, base string, j job, size int64) bundleResult {
	partial := 0
	if j.count < tileWidth {
		partial = j.count
	}
	path := tilePath(j.tile, partial)
	bp, err := get(client, base+path, maxBundle)
	if err != nil {
		return bundleResult{err: err}
	}
	defer bufPool.Put(bp)
	b := *bp
	leaves := make([]tlog.Hash, 0, j.count)
	for len(b) > 0 {
		if len(b) < 2 {
			return bundleResult{err: fmt.Errorf("bundle %s is short: a stray byte after %d entries", path, len(leaves))}
		}
		n := int(binary.BigEndian.Uint16(b))
		if len(b) < 2+n {
			return bundleResult{err: fmt.Errorf("bundle %s is short: entry %d claims %d bytes, %d remain",
				path, j.tile*tileWidth+int64(len(leaves)), n, len(b)-2)}
		}
		if len(leaves) == j.count {
			return bundleResult{err: fmt.Errorf("bundle %s has more than the %d entries expected in a log of %d", path, j.count, size)}
		}
		leaves = append(leaves, tlog.RecordHash(b[2:2+n]))
		b = b[2+n:]
	}
	if len(leaves) != j.count {
		return bundleResult{err: fmt.Errorf("bundle %s has %d entries, expected %d", path, len(leaves), j.count)}
	}
	return bundleResult{leaves: leaves}
}

func main() {
	logURL := flag.String("log", "", "the log's base URL, e.g. http://127.0.0.1:8080")
	vkeyFile := flag.String("vkey", "", "file holding the log's verifier key (name+hash+base64); checks the checkpoint's signature")
	workers := flag.Int("workers", 2*runtime.GOMAXPROCS(0), "concurrent bundle fetches")
	flag.Parse()
	if *logURL == "" || flag.NArg() != 0 || *workers < 1 {
		flag.Usage()
		os.Exit(2)
	}
	base := strings.TrimSuffix(*logURL, "/")

	var verifiers note.Verifiers
	if *vkeyFile != "" {
		raw, err := os.ReadFile(*vkeyFile)
		if err != nil {
			fail("%v", err)
		}
		v, err := note.NewVerifier(strings.TrimSpace(string(raw)))
		if err != nil {
			fail("verifier key %s: %v", *vkeyFile, err)
		}
		verifiers = note.VerifierList(v)
	}

	client := &http.Client{
		Timeout: 60 * time.Second,
		Transport: &http.Transport{
			DialContext:         (&net.Dialer{Timeout: 10 * time.Second, KeepAlive: 30 * time.Second}).DialContext,
			MaxIdleConns:        *workers,
			MaxIdleConnsPerHost: *workers,
			IdleConnTimeout:     90 * time.Second,
			DisableCompression:  true,
		},
	}

	start := time.Now()

	// The checkpoint, verified when a key is given.
	bp, err := get(client, base+"/checkpoint", 1<<20)
	if err != nil {
		fail("%v", err)
	}
	msg := append([]byte(nil), *bp...)
	bufPool.Put(bp)
	var text string
	if verifiers != nil {
		n, err := note.Open(msg, verifiers)
		if err != nil {
			fail("checkpoint signature: %v", err)
		}
		text = n.Text
	} else {
		i := bytes.LastIndex(msg, []byte("\n\n"))
		if i < 0 {
			fail("checkpoint is not a signed note: no blank line before the signatures")
		}
		text = string(msg[:i+1])
	}
	cp, err := parseCheckpoint(text)
	if err != nil {
		fail("%v", err)
	}

	// Bundles: a dispatcher hands tiles to the workers in order and queues each tile's result
	// channel, so the folder below takes results in log order; the queue's capacity bounds how
	// far fetching runs ahead of folding.
	tiles := (cp.size + tileWidth - 1) / tileWidth
	jobs := make(chan job)
	order := make(chan chan bundleResult, 4**workers)
	go func() {
		for t := int64(0); t < tiles; t++ {
			count := tileWidth
			if rest := cp.size - t*tileWidth; rest < tileWidth {
				count = int(rest)
			}
			out := make(chan bundleResult, 1)
			order <- out
			jobs <- job{tile: t, count: count, out: out}
		}
		close(order)
		close(jobs)
	}()
	for w := 0; w < *workers; w++ {
		go func() {
			for j := range jobs {
				j.out <- fetchBundle(client, base, j, cp.size)
			}
		}()
	}

	// The folder: every leaf hash into the stored hashes, in order.
	stored := make(memHashes, 0, tlog.StoredHashCount(cp.size))
	var entries int64
	for out := range order {
		r := <-out
		if r.err != nil {
			fail("%v", r.err)
		}
		for _, leaf := range r.leaves {
			hashes, err := tlog.StoredHashesForRecordHash(entries, leaf, stored)
			if err != nil {
				fail("stored hashes for entry %d: %v", entries, err)
			}
			stored = append(stored, hashes...)
			entries++
		}
	}
	if entries != cp.size {
		fail("read %d entries, the checkpoint's size is %d", entries, cp.size)
	}
	root, err := tlog.TreeHash(entries, stored)
	if err != nil {
		fail("tree hash: %v", err)
	}
	if root != cp.root {
		fail("root mismatch: the %d entries hash to %s, the checkpoint says %s", entries, root, cp.root)
	}
	elapsed := time.Since(start).Seconds()

	rate := int64(0)
	if elapsed > 0 {
		rate = int64(float64(entries) / elapsed)
	}
	signed := "signature not checked (no -vkey)"
	if verifiers != nil {
		signed = "signature verified"
	}
	fmt.Fprintf(os.Stderr, "go tlogaudit: %s, %d entries in %.3f s (%d workers), root %s matches, %s\n",
		cp.origin, entries, elapsed, *workers, root, signed)
	fmt.Printf("%d %d %s\n", rate, entries, root)
}
