// Command tlogbench builds the Merkle tree of a log's entries with Go's golang.org/x/mod/sumdb/tlog
// (RecordHash and StoredHashes, the way a Go auditor would) and prints entries per second.
// Input: uint16-length-prefixed entries, as `keyglass-bench export` writes them.
package main

import (
	"encoding/binary"
	"fmt"
	"os"
	"time"

	"golang.org/x/mod/sumdb/tlog"
)

type memHashes []tlog.Hash

func (m memHashes) ReadHashes(indexes []int64) ([]tlog.Hash, error) {
	out := make([]tlog.Hash, len(indexes))
	for i, x := range indexes {
		out[i] = m[x]
	}
	return out, nil
}

func main() {
	raw, err := os.ReadFile(os.Args[1])
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	var entries [][]byte
	for len(raw) >= 2 {
		n := int(binary.BigEndian.Uint16(raw))
		entries = append(entries, raw[2:2+n])
		raw = raw[2+n:]
	}
	start := time.Now()
	stored := make(memHashes, 0, 2*len(entries))
	for i, e := range entries {
		hashes, err := tlog.StoredHashes(int64(i), e, stored)
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(1)
		}
		stored = append(stored, hashes...)
	}
	root, err := tlog.TreeHash(int64(len(entries)), stored)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	elapsed := time.Since(start).Seconds()
	fmt.Fprintf(os.Stderr, "go tlog: %d entries, root %x\n", len(entries), root[:8])
	fmt.Printf("%d\n", int(float64(len(entries))/elapsed))
}
